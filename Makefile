# Two entry points a newcomer needs; each creates the environment (.venv) itself on first use.
#   make run    set up, then run the embedded default (split-digits, built-in strategies, 3 seeds)
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision pinned to the releases that install from this machine's disk
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,ray,timm]'
	touch $@

run: setup
	$(BIN)/clproto run --out runs/default

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
