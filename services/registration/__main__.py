"""Composition root: `python -m services.registration`."""

from shared.runtime import main

from .app import definition

if __name__ == "__main__":
    main(definition)
