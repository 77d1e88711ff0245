"""Composition root: `python -m services.supervision`."""

from shared.runtime import main

from .app import definition

if __name__ == "__main__":
    main(definition)
