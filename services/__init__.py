"""The bapas services, one bounded context each; they share only events."""
