# One command sets up and runs the sample event (make demo), one runs the tests (make test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where pip finds the CPU build of torch; empty = pip's configured index (see README, "CPU-only torch").
TORCH_INDEX ?=
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint bench-quality clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to its CPU build: an unpinned torch pulled in by sentence-transformers is CUDA's
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/harvest run data/raw/ecc2020-sample

test: setup
	$(BIN)/ruff check pipeline flows tests benchmarks
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check pipeline flows tests benchmarks
	$(BIN)/ruff format --check pipeline flows tests benchmarks

bench-quality: setup
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf $(VENV) data/processed/* data/raw/*/uploads data/raw/*/rejected data/raw/*/manifest.json
