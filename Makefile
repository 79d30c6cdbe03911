# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: demo test lint format bench install install-spark clean wheel-check

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The Spark tests need the optional `spark` extra (pyspark, ~900 MB with its jars); the demo does not.
$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,spark]'
	touch $(SPARK_STAMP)

install: $(STAMP)

install-spark: $(SPARK_STAMP)

# The demo starts from an empty warehouse of its own so that it can be rerun.
DEMO_WAREHOUSE ?= warehouse/demo.duckdb
DEMO_MODELS ?= warehouse/demo_models

demo: $(STAMP)
	rm -rf $(DEMO_WAREHOUSE) $(DEMO_WAREHOUSE).wal $(DEMO_MODELS)
	$(BIN)/mallscore --warehouse $(DEMO_WAREHOUSE) --models-dir $(DEMO_MODELS) demo

test: $(SPARK_STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# ruff's settings live in pyproject.toml; CI runs `make lint`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Build the wheel, install it (not editable) in a fresh venv, run the pipeline outside the checkout.
wheel-check:
	PYTHON=$(PY) .ci/check-wheel

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) warehouse/*.duckdb warehouse/*.wal $(DEMO_MODELS)
