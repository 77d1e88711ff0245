# The two commands a newcomer needs: `make up` and `make test`. Each creates .venv and
# installs the project on first use (and again whenever pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test bench clean

up: $(STAMP)
	$(BIN)/bapas up

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/bapas bench kernel

$(VENV): $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bapas needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache
