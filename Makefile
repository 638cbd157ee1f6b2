# Two commands do all the set-up on a fresh machine:
#   make demo   - install into .venv, then `arnstream demo`: embedded broker, simulated traffic,
#                 train, serve live flows with attacks, summary (about five minutes)
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
	$(BIN)/pip install --quiet -e '.[dev]'  # dev includes the confluent and embedded extras
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/arnstream demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) results .pytest_cache
