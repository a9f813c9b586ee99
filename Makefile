# make demo: set up and run the sample event. make test: the fast tier (unit and small integration tests);
# make test-all: lint and every test, what CI runs (.ci/run). make lint: ruff, format, mypy, layers.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where pip finds the CPU build of torch; empty = pip's configured index (see README, "CPU-only torch").
TORCH_INDEX ?=
TORCH_VERSION ?= 2.13.0

PY_DIRS := pipeline flows web cli tests benchmarks
# Models load from installed packages or local paths: never from a hub (the machines have none)
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE

.PHONY: setup browser demo test test-all lint typecheck bench-quality clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	# Pango and Cairo for the PDF and DOCX paper, installed when missing (as root or with sudo)
	bash .ci/paper-libs.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to its CPU build: an unpinned torch pulled in by sentence-transformers is CUDA's
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/harvest run data/raw/ecc2020-sample

# Debian's Chromium for the browser tests, installed when missing (as root or with sudo)
browser:
	bash .ci/chromium.sh

test: setup browser
	$(BIN)/python -m pytest -m "not slow"

test-all: setup browser lint
	$(BIN)/python -m pytest

lint: setup typecheck
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

bench-quality: setup
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf $(VENV) data/processed/* data/raw/*/uploads data/raw/*/rejected data/raw/*/manifest.json
