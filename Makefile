# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test reliability dev lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

## demo: simulator + `dg launch --partition-range` of the last 3 closed days of both demo PBXs
## -> data/ (Parquet, DuckDB, recordings), runs in .dagster_home, Dagster's output in data/demo.log
demo: $(VENV)/.installed
	$(PY) -m cdr_assets.demo run

## test: the whole suite (starts its own simulator and S3 server on loopback), in 3 pytest-xdist
## workers: the tests mostly wait on servers and subprocesses (7.5 min instead of 15.5 on 2 cores)
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 3

## reliability: the fault matrix through `dg launch` / `dg dev` (each fault with its own simulator
## and DAGSTER_HOME) -> reliability/results/latest.md; exits non-zero when a row fails
reliability: $(VENV)/.installed
	$(PY) -m reliability

## dev: simulator + `dg dev`: the Dagster UI on http://127.0.0.1:3000, demo config, .dagster_home
dev: $(VENV)/.installed
	$(PY) -m cdr_assets.demo dev

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

## bench: every table of benchmarks/README.md and the profiles behind the targets (~40 min on
## 2 cores; `$(PY) -m benchmarks.run --quick` skips the long rows)
## -> benchmarks/results/<date>.md + latest.md and README.md's performance block
bench: $(VENV)/.installed
	$(PY) -m benchmarks.run --readme --profile

clean:
	rm -rf data .dagster_home
