"""The bapas event kernel: what every service shares.

Events are facts stored once, in NATS JetStream, with a CloudEvents envelope and a per-case
hash chain. Services decide on commands against a case's events, append with an expected
sequence, and build their own PostgreSQL read models from durable consumers.
"""
