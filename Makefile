PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/si-ingest: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/si-ingest

demo: install
	$(BIN)/si-ingest demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_submit.py

clean:
	rm -rf $(VENV) si-demo .pytest_cache
