PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install check format demo test bench bench-smoke clean

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
	$(BIN)/python -m pytest -q -n 3 --cov --cov-report=term-missing

# the rate benchmark (issue 8; it took over bench_submit.py's CLI vs bare aiohttp loop), ~12 min:
# prints each figure beside its same-run baseline and rewrites the Rate section of bench/RESULTS.md;
# exits 1 if a target fails. The ledger scale benchmark (10M rows, ~25 min) is bench/ledger_scale.py;
# a real run's memory at 1M and 5M rows (~20 min) is bench/send_memory.py.
bench: install
	$(BIN)/python bench/bench_rate.py

# every case of bench_rate.py, bench/ledger_scale.py and bench/send_memory.py once at tiny sizes (~30 s), so the
# benchmarks never rot; CI runs it (figures are not checked at these sizes)
bench-smoke: install
	$(BIN)/python bench/bench_rate.py --quick
	$(BIN)/python bench/ledger_scale.py --quick
	$(BIN)/python bench/send_memory.py --quick

clean:
	rm -rf $(VENV) si-demo .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
