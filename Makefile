# Set-up is part of every target: `make train` and `make test` work on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint chaos bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml setup.py trainer/replay/bindhost.c
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	  || { echo "trainer needs Python 3.11 (TensorFlow 2.15 and Reverb 0.14 ship wheels for it), but" \
	       "PYTHON=$(PYTHON) is $$($(PYTHON) --version 2>&1): install python3.11, or run" \
	       "make PYTHON=/path/to/python3.11 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The default job: DQN on CartPole into runs/dqn_cartpole. Run it again to resume.
# RUN, CONFIG and ARGS (more flags, e.g. ARGS=--gin_bindings=train.seed=1) pick another job.
RUN ?= runs/dqn_cartpole
CONFIG ?= configs/dqn_cartpole.gin
# make exits 2 whenever a recipe fails, whatever the trainer's code: the recipe names
# the trainer's own exit code and what to do. Ctrl-C and SIGTERM reach the trainer,
# which commits a checkpoint; the shell waits for it (its trap) to say so.
# The resume hint is the command as given: RUN, CONFIG and ARGS when set, quoted for the shell.
train: export TRAIN_RESUME_RUN = $(if $(filter-out file default,$(origin RUN)),$(RUN))
train: export TRAIN_RESUME_CONFIG = $(if $(filter-out file default,$(origin CONFIG)),$(CONFIG))
train: export TRAIN_RESUME_ARGS = $(value ARGS)
RESUME = $(BIN)/python -c 'import os, shlex; print(" ".join(["make train"] + [k + "=" + \
  shlex.quote(os.environ["TRAIN_RESUME_" + k]) for k in ("RUN", "CONFIG", "ARGS") \
  if os.environ.get("TRAIN_RESUME_" + k)]))'
train: $(STAMP)
	@trap : INT TERM; $(BIN)/python -m trainer.train --root_dir=$(RUN) --gin_file=$(CONFIG) $(ARGS); \
	rc=$$?; case $$rc in \
	  0) ;; \
	  75) echo "make train: the trainer stopped (exit 75) after committing a checkpoint; to" \
	       "resume, run: $$($(RESUME))" ;; \
	  2) echo "make train: the trainer refused its command line or config (exit 2); nothing was" \
	      "written: fix what the error line says." ;; \
	  3) echo "make train: the run directory $(RUN) cannot be used (exit 3): see the error line." ;; \
	  *) echo "make train: the trainer failed (exit $$rc); the last committed checkpoint is" \
	      "intact: to resume from it, run: $$($(RESUME))" ;; \
	esac; exit $$rc

# The suite on 2 workers, its 15 slowest tests listed: 25-37 minutes on 2 cores from a fresh
# clone, install included (34 min 35 s for 351 tests at the last such run). CI: .ci/run.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15 tests

# The fast tests only (bundle store, export index, triggers, config diff, supervisor, manifests):
# seconds; collecting them imports no TensorFlow (tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m fast tests

# Kill-and-resume chaos suite: 30 SIGKILLs per replay backend (in-graph, Reverb, and the frame
# replay under a pixel job), then 20 over the roles, then 30 of a job on gs:// (a GCS emulator on
# loopback: kills during uploads, marker writes and retention).
chaos: $(STAMP)
	$(BIN)/python scripts/chaos.py --kills=30 --backend=all
	$(BIN)/python scripts/chaos_roles.py --kills=20
	$(BIN)/python scripts/chaos_gcs.py --kills=30

# Benchmarks (~70 minutes here: ~25 for the CartPole and roles parts, up to ~35 when the TF-Agents
# example is slow to solve, its time varying from 30 s to 3 min; ~45 for the 1M-step frame replay,
# the roles' frame layout, the Atari throughput and the sweep parts, timed 2026-12-07):
# benchmarks/results.json and docs/benchmarks.md's table.
# `make bench QUICK=1` is a smoke run (a few minutes) that writes neither.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick)

lint: $(STAMP)
	$(BIN)/ruff check trainer tests scripts benchmarks

clean:
	rm -rf $(VENV) *.egg-info
