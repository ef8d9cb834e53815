"""Pure logic that end-to-end tests cover only through whole jobs: triggers and
config diffs. Seconds in all (`make test-fast`)."""

import pytest

from trainer.config import gin_config
from trainer.learning.triggers import GridTrigger

pytestmark = pytest.mark.fast


def _fired(interval: int, steps: list[int], start: int = 0) -> list[int]:
  fired = []
  trigger = GridTrigger(interval, lambda: fired.append(current))
  trigger.set_start(start)
  for current in steps:
    trigger(current)
  return fired


def test_grid_trigger_fires_on_multiples_whatever_the_call_steps():
  assert _fired(10, [3, 10, 17, 20, 29, 41]) == [10, 20, 41]  # 41 crossed 30 and 40: once
  assert _fired(10, list(range(1, 31))) == [10, 20, 30]


def test_grid_trigger_after_a_resume_continues_the_grid():
  # Resumed at 23 (an emergency checkpoint): the next events are 30 and 40, not 33 and 43.
  assert _fired(10, [25, 30, 35, 40], start=23) == [30, 40]
  assert _fired(10, [20, 21, 30], start=20) == [30]  # the resumed step does not fire again


OLD = """
train.num_iterations = 100
train.log_interval = 10
create_dqn_agent.learning_rate = 0.001
"""


def test_config_diff_lists_each_change_readably():
  new = OLD.replace("100", "200").replace("0.001", "0.5") + "train.seed = 3\n"
  assert gin_config.diff(OLD, new) == [
      "create_dqn_agent.learning_rate: 0.001 -> 0.5",
      "train.num_iterations: 100 -> 200",
      "train.seed: (unset) -> 3",
  ]
  assert gin_config.diff(OLD, OLD) == []


def test_benign_bindings_are_run_length_schedules_and_logging_only():
  assert {"train.num_iterations", "train.log_interval", "train.checkpoint_interval",
          "train.policy_export_interval"} <= gin_config.BENIGN_BINDINGS
  for experiment in ("train.seed", "train.batch_size", "train.collect_steps_per_iteration",
                     "train.train_steps_per_iteration", "train.replay_fn", "train.agent_fn",
                     "create_dqn_agent.learning_rate"):
    assert experiment not in gin_config.BENIGN_BINDINGS
