# onestep: `make demo` runs the default stage-ordering ablation, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
TARGET ?= ablate_order
ARGS   ?=
# `make mlflow-server`: one tracking server that many jobs log to over HTTP (MLFLOW_TRACKING_URI)
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
MLFLOW_BACKEND ?= sqlite:///$(CURDIR)/results/mlflow.db
MLFLOW_ARTIFACTS ?= $(CURDIR)/results/mlartifacts
MLFLOW_ALLOWED_HOSTS ?=
# rules call the package's CLI through Snakemake's own interpreter (`python -m onestep`): no PATH needed;
# the venv's bin first on PATH is for the other commands here (mlflow, onestep where)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv demo paper slurm test lint ui mlflow-server clean-results bench figures gpu-check

venv: $(STAMP)

$(STAMP): envs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# first `onestep preflight`: the --configfile files of ARGS checked (file, line, column of a YAML error) and a
# stale lock of a killed Snakemake removed, each said in one line (docs/cluster.md, "A killed Snakemake")
demo: $(STAMP)
	@$(BIN)/onestep preflight demo -- $(ARGS)
	$(BIN)/snakemake --cores $(CORES) $(TARGET) $(ARGS)
	@$(BIN)/onestep where $(TARGET) $(ARGS)

# every table and figure of a tier under results/paper/<tier>/ (index.md), then the browsable report;
# another tier: make paper PAPER_ARGS="--configfile config/digits.yaml"
PAPER_ARGS ?=
paper: $(STAMP)
	@$(BIN)/onestep preflight demo -- $(PAPER_ARGS)
	$(BIN)/snakemake --cores $(CORES) paper $(PAPER_ARGS)
	$(BIN)/snakemake --cores $(CORES) paper $(PAPER_ARGS) --report results/paper/report.html

# the same target on SLURM: the shipped profile ./slurm (cluster values from ONESTEP_SLURM_* variables);
# ARGS go to snakemake, e.g. make slurm ARGS="--configfile my.yaml". The preflight as for demo, and where sacct does
# not answer (no accounting) it adds --slurm-status-command squeue, saying so (or stops, naming the flag)
slurm: $(STAMP)
	@extra="$$($(BIN)/onestep preflight slurm -- $(ARGS))" && set -x && $(BIN)/snakemake --profile slurm $(TARGET) $(ARGS) $$extra

# two pytest workers (pytest-xdist), whole files per worker so a file's shared fixture runs once; the
# slowest tests are printed at the end. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .

ui: $(STAMP)
	$(BIN)/onestep ui

# MLFLOW_BACKEND may be a PostgreSQL URL (postgresql://user:pass@host:5432/mlflow); MLFLOW_HOST=0.0.0.0 to
# serve compute nodes, with MLFLOW_ALLOWED_HOSTS=$$(hostname),$$(hostname -f) for their Host headers
mlflow-server: $(STAMP)
	mkdir -p results
	@echo "jobs log here with: export MLFLOW_TRACKING_URI=http://$(if $(filter 0.0.0.0,$(MLFLOW_HOST)),$$(hostname -f),$(MLFLOW_HOST)):$(MLFLOW_PORT)"
	$(BIN)/mlflow server --backend-store-uri $(MLFLOW_BACKEND) --artifacts-destination $(MLFLOW_ARTIFACTS) \
		--host $(MLFLOW_HOST) --port $(MLFLOW_PORT) $(if $(MLFLOW_ALLOWED_HOSTS),--allowed-hosts $(MLFLOW_ALLOWED_HOSTS))

# the pipeline's own costs side by side (trainer vs a bare loop, one step vs DDIM-50, snakemake -n of 1000
# runs, shared jobs, peak memory): one table, results/bench/*.json (docs/results.md). `make figures`: the
# figures of docs/results.md
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(ARGS)

figures: $(STAMP)
	$(BIN)/python benchmarks/figures.py

# on a GPU node: every method's training and sampling on CUDA (fp32, bf16), then teacher, pairs and
# evaluation through the CLI as the rules call them; one PASS/FAIL line per path (docs/gpu.md)
GPU_DEVICE ?= cuda
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --device $(GPU_DEVICE)
