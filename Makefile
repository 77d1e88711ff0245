# The two commands a newcomer needs: `make up` and `make test`. Each creates .venv and
# installs the project on first use (and again whenever pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The console's browser tests drive Debian's chromium; `make test` installs it when it is
# missing (apt, as root or through sudo). Playwright's own browser download is not used.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test bench clean chromium

up: $(STAMP)
	$(BIN)/bapas up

test: $(STAMP) chromium
	$(BIN)/pytest

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the console's browser tests"; \
	  $(SUDO) apt-get install -y --no-install-recommends chromium >/dev/null \
	  || { $(SUDO) apt-get update >/dev/null && \
	       $(SUDO) apt-get install -y --no-install-recommends chromium >/dev/null; }; }

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
