# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint system-deps venv constraints

venv: $(VENV)/.installed

# setup.py compiles the proxy's request path (mypyc) into the tree: a change to it rebuilds
$(VENV)/.installed: pyproject.toml setup.py $(wildcard proxy/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/pytest

demo: system-deps venv
	$(BIN)/vmesh demo

# the versions of vmesh's libraries the tests ran with, which role vmesh installs on every host
constraints: venv
	$(BIN)/python scripts/pin_dependencies.py > ansible/roles/vmesh/files/constraints.txt
