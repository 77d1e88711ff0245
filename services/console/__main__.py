"""Composition root: `python -m services.console`."""

from .app import main

if __name__ == "__main__":
    main()
