# `make test` and `make demo` do all set-up on a fresh machine: create .venv if missing, install the CPU torch
# build and the package, then run. A GPU user can pre-create .venv with their own torch build; it is kept.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.prefrestore-installed

.PHONY: install test test-slow demo bench lint docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,identity]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) -m prefrestore.demo

bench: $(STAMP)
	$(PY) benchmarks/bench_restore.py

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks tools
	$(PY) -m ruff format --check src tests benchmarks tools
	$(VENV)/bin/lint-imports

# The documentation site (mkdocs.yml; docs/): --strict fails on any warning, e.g. a broken link or heading anchor.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict -d build/site

clean:
	rm -rf $(VENV) .pytest_cache demo_output
