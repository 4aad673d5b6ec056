VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Stamp files: an install reruns only when pyproject.toml or constraints.txt changed.
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.PHONY: install install-dev run test quick lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(INSTALLED_DEV): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@ $(INSTALLED)

install: $(INSTALLED)

install-dev: $(INSTALLED_DEV)

run: install
	$(BIN)/lambda-search run studies/quickstart.toml

# Two test processes: most slow tests wait on worker subprocesses, PostgreSQL or SLURM, not on a core
# (the suite's wall time on the 2-core CI machine; `make test TEST_WORKERS=auto` uses every core).
TEST_WORKERS ?= 2
test: install-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# The fast tests: no end-to-end runs, no PostgreSQL (a minute or two on a laptop CPU).
quick: install-dev
	$(BIN)/python -m pytest -m "not slow and not postgres"

# vulture finds dead code: names nothing uses (tests/vulture_whitelist.py lists those only torch, Python or pytest use).
lint: install-dev
	$(BIN)/ruff check lambda_search tests bench examples
	$(BIN)/mypy lambda_search
	$(BIN)/vulture lambda_search tests bench examples
	$(BIN)/lint-imports

clean:
	rm -rf studies/*.db studies/*.lock studies/*.artifacts
