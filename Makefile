# ricom — two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs ricom, simulates and reconstructs the built-in specimen
#   make test   installs the test extras and runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test lint bench acceptance clean docs report fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,gui,docs]"
	touch $@ $(STAMP) $(DOCS_STAMP)  # the docs extra came with it: make docs installs nothing more

demo: $(STAMP)
	$(BIN)/ricom demo -o ricom_demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

# the fuzz suite (tests/fuzz) long: FUZZ_EXAMPLES per parser, a fixed seed; CI runs it short with `make test`
FUZZ_EXAMPLES ?= 100000
fuzz: $(TEST_STAMP)
	RICOM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/fuzz --hypothesis-seed=0 \
		--hypothesis-show-statistics -p no:cacheprovider --durations=0

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports

acceptance: $(STAMP)
	$(BIN)/python ../shared/acceptance/quick_check.py

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@ $(STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

report: $(STAMP)
	$(BIN)/ricom report demo -o ricom_report

bench: $(STAMP)
	$(BIN)/ricom bench --quick

clean:
	rm -rf $(VENV) ricom_demo ricom_report docs/_build .pytest_cache build *.egg-info src/*.egg-info
