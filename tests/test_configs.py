"""Every shipped config parses, builds its parts, trains, and records every knob."""

import inspect
import re

import pytest

from tests.conftest import CONFIGS, bindings
from trainer.cli import (
  registry,  # noqa: F401
  status,
)
from trainer.config import gin_config
from trainer.config.settings import knob_names
from trainer.loops.job import configure_job, open_job

CONFIG_FILES = sorted(CONFIGS.glob("*.gin"))

# Keeps each config's agent, networks and replay as shipped; only shortens the run.
SHORT_RUN = {
    "train.num_iterations": 3,
    "train.checkpoint_interval": 2,
    "train.policy_export_interval": 3,
    "train.eval_interval": 3,
    "train.eval_episodes": 1,
    "train.initial_collect_steps": 20,
    "train.batch_size": 8,
    "create_gym_environment.max_episode_steps": 20,
}


def test_configs_exist():
  names = {p.name for p in CONFIG_FILES}
  assert {"dqn_cartpole.gin", "sac_pendulum.gin"} <= names


# An on-policy job moves a batch at a time: two of one epoch of two minibatches of 8 steps here.
SHORT_ON_POLICY = {
    **SHORT_RUN, "train.num_iterations": 4, "train.checkpoint_interval": 2,
    "train.policy_export_interval": 4, "train.eval_interval": 4, "train.log_interval": 2,
    "train.summary_interval": 2, "train.initial_collect_steps": 0,
    "train.train_steps_per_iteration": 2, "create_ppo_agent.num_epochs": 1,
    "create_ppo_agent.minibatch_size": 8,
    "train.collect_steps_per_iteration": 16, "create_uniform_replay.capacity": 16,
}


def short_run(path) -> dict:
  return SHORT_ON_POLICY if "@on_policy_loop" in path.read_text() else SHORT_RUN


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_parses_builds_and_trains(tmp_path, path):
  root = str(tmp_path / "run")
  short = short_run(path)
  run_config = gin_config.load(root, [str(path)], bindings(short))
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
  result = status.run_status(root)
  total = short["train.num_iterations"]
  assert result["complete"] is True
  assert result["train_step"] == total
  assert result["checkpoints"][-1] == total
  assert [e["train_step"] for e in result["exports"]] == [total]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_sets_every_train_knob(path):
  """A config is a complete experiment record: no `train.*` knob is left to a default."""
  text = path.read_text()
  knobs = [name for name, p in inspect.signature(configure_job).parameters.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY] + knob_names()
  missing = [k for k in knobs if not re.search(rf"^train\.{k}\s*=", text, re.MULTILINE)]
  assert not missing, f"{path.name} leaves train.{missing} unset"
