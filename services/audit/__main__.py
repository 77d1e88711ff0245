"""Composition root: `python -m services.audit`."""

from shared.runtime import main

from .app import definition

if __name__ == "__main__":
    main(definition)
