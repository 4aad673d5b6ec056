VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install install-dev run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'

run: install
	$(BIN)/lambda-search run studies/quickstart.toml

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check lambda_search tests bench
	$(BIN)/mypy lambda_search

clean:
	rm -rf studies/*.db studies/*.lock studies/*.artifacts
