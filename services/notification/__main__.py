"""Composition root: `python -m services.notification`."""

from shared.runtime import main

from .app import definition

if __name__ == "__main__":
    main(definition)
