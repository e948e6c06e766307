# onestep: `make demo` runs the default stage-ordering ablation, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
TARGET ?= ablate_order
# rules call the package's CLI (`onestep ...`): the venv's bin comes first on PATH
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv demo test lint ui clean-results bench

venv: $(STAMP)

$(STAMP): envs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(TARGET)
	@$(BIN)/onestep where $(TARGET)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

ui: $(STAMP)
	$(BIN)/onestep ui

bench: $(STAMP)
	$(BIN)/python benchmarks/figures.py
