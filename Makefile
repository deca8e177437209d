# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint system-deps venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: venv system-deps lint
	$(BIN)/pytest

demo: venv system-deps
	$(BIN)/vmesh demo
