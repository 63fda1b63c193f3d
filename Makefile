# Two commands for a newcomer: `make run` (install + the whole workflow on config/config.yaml)
# and `make test` (install + the test suite). Everything lands in .venv; nothing else on the machine changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Rules call `python`: the venv's, first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint clean bench-recbole-venv

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# On at most 3 cores every job runs on one thread (profiles/single-thread-jobs), as the results of record were
# made: two jobs side by side then get through about 1.3x the epochs of one job on two threads (README, "Two
# commands"). `make run CORES=8` overrides the count.
CORES ?= $(shell nproc 2>/dev/null || echo 4)
RUN_PROFILE := $(if $(filter 1 2 3,$(CORES)),--profile profiles/single-thread-jobs)

run: install
	snakemake --cores all $(RUN_PROFILE)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

clean:
	rm -rf results/* .snakemake logs

# RecBole 1.2.1 in its own venv, for benchmarks/bench_recbole.py (git-ignored: .venv/).
RECBOLE_VENV := benchmarks/recbole/.venv
bench-recbole-venv: $(RECBOLE_VENV)/.installed

$(RECBOLE_VENV)/.installed: benchmarks/recbole/requirements.txt
	$(PYTHON) -m venv $(RECBOLE_VENV)
	$(RECBOLE_VENV)/bin/pip install --quiet --upgrade pip
	$(RECBOLE_VENV)/bin/pip install --quiet -r benchmarks/recbole/requirements.txt
	touch $@
