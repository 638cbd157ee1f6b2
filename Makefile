# Two commands do all the set-up on a fresh machine:
#   make demo   - install into .venv, then evaluate ARN and the baselines on generated flows
#   make test   - install into .venv, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU build on this disk; a looser request downloads gigabytes
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/arnstream evaluate --dataset synthetic --model arn-n --runs 2 --epochs 8 --batch-size 256 --out results/demo-arn-n.json
	$(BIN)/arnstream evaluate --dataset synthetic --model ae --runs 2 --epochs 8 --batch-size 256 --out results/demo-ae.json
	$(BIN)/arnstream evaluate --dataset synthetic --model iforest --runs 2 --out results/demo-iforest.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) results .pytest_cache
