# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test dev lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

## demo: simulator + both demo PBXs, last 3 closed days -> data/ (Parquet, DuckDB, recordings)
demo: $(VENV)/.installed
	$(PY) -m cdr_assets.demo run

## test: the whole suite (starts its own simulator and S3 server on loopback)
test: $(VENV)/.installed
	$(PY) -m pytest -q

## dev: the Dagster UI (http://127.0.0.1:3000) on the demo config, simulator running
dev: $(VENV)/.installed
	$(PY) -m cdr_assets.demo ui

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(PY) -m benchmarks.run

clean:
	rm -rf data .dagster_home
