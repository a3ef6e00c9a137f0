VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test quick demo

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[app,dev,postgres]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(PY) -m pytest

# the unit tests alone (tests/unit: one module in-process, each under a second): under a minute
quick: $(STAMP)
	$(PY) -m pytest -q tests/unit

demo: $(STAMP)
	bash scripts/demo.sh
