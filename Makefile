# Set-up is part of every target: `make train` and `make test` work on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint chaos bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The default job: DQN on CartPole into runs/dqn_cartpole. Run it again to resume.
train: $(STAMP)
	$(BIN)/python -m trainer.train --root_dir=runs/dqn_cartpole --gin_file=configs/dqn_cartpole.gin

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

# Pure-logic tests only (bundle store, export index and grid, triggers, config diff): seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m fast tests

# Kill-and-resume chaos suite: >= 30 SIGKILLs per replay backend (8-11 minutes here).
chaos: $(STAMP)
	$(BIN)/python scripts/chaos.py --kills=30 --backend=both

# Benchmarks (two runs here took 19 and 15 minutes; up to ~30 when the TF-Agents example is slow to
# solve, as its time varies from 30 s to 3 min here): benchmarks/results.json and docs/benchmarks.md.
# `make bench QUICK=1` is a smoke run (a few minutes) that writes neither.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick)

lint: $(STAMP)
	$(BIN)/ruff check trainer tests scripts benchmarks

clean:
	rm -rf $(VENV) *.egg-info
