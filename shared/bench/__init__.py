"""Benchmarks (`bapas bench ...`): never timed assertions in tests."""
