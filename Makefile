PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench conformance clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/python -m nnforge.models.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/compare_ort.py

conformance: $(STAMP)
	$(BIN)/python benchmarks/conformance.py

clean:
	rm -rf $(VENV) build .pytest_cache
