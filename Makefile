# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint system-deps venv constraints

venv: $(VENV)/.installed

# setup.py compiles the proxy's request path (mypyc) into the tree: a change to it rebuilds.
# The libraries vmesh runs on are installed at the versions hosts get (CONSTRAINTS), so the
# tests run with exactly what role vmesh installs; to move to newer ones, upgrade them in the
# venv, run the tests, then `make constraints`.
CONSTRAINTS := ansible/roles/vmesh/files/constraints.txt
$(VENV)/.installed: pyproject.toml setup.py $(CONSTRAINTS) $(wildcard proxy/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Most tests wait on processes, sockets and SSH rather than a CPU: TEST_WORKERS pytest workers
# run them side by side, a test module to a worker (its module-scoped hosts are set up once).
# Tests share the machine safely: free ports, mDNS names and trust domains of their own,
# namespaces and subnets picked at random.
TEST_WORKERS ?= 2
test: system-deps venv lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

demo: system-deps venv
	$(BIN)/vmesh demo

# the versions of vmesh's libraries the tests ran with, which role vmesh installs on every host
constraints: venv
	$(BIN)/python scripts/pin_dependencies.py > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
