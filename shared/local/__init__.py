"""The local platform: embedded servers and the `bapas up` supervisor."""
