PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install check format demo test bench clean

$(BIN)/si-ingest: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

install: $(BIN)/si-ingest

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install
	$(BIN)/si-ingest demo

test: install
	$(BIN)/python -m pytest -q -n 2 --cov --cov-report=term-missing

bench: install
	$(BIN)/python bench/bench_submit.py

clean:
	rm -rf $(VENV) si-demo .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
