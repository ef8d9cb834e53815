"""The loop's schedule: Learner calls end on every event; collection keeps its ratio."""

import json

import pytest

from tests.conftest import TINY_DQN, bindings, run_train
from trainer.config.settings import Settings
from trainer.loops.off_policy import collects_before
from trainer.loops.schedule import steps_until_next_event

BASE = dict(num_iterations=100, checkpoint_interval=30, policy_export_interval=45,
            eval_interval=0, eval_episodes=1, initial_collect_steps=0, collect_envs=1,
            collect_steps_per_iteration=20, train_steps_per_iteration=20, batch_size=8,
            keep_checkpoints=3, summary_interval=0, log_interval=7, seed=0,
            exports_keep_last=5, exports_keep_best=3, exports_keep_every=0)


def _simulate(settings: Settings, start: int = 0) -> tuple[list[int], int]:
  """(the steps where Learner calls end, env steps collected) of the job's loop."""
  step, ends, collected = start, [], 0
  while step < settings.num_iterations:
    if collects_before(settings, step):
      collected += settings.collect_steps_per_iteration
    step += steps_until_next_event(settings, step, settings.num_iterations)
    ends.append(step)
  return ends, collected


@pytest.mark.parametrize("log_interval", [1, 7, 20, 33, 1000])
def test_collect_to_train_ratio_is_exact_whatever_the_intervals(log_interval):
  settings = Settings(**{**BASE, "log_interval": log_interval})
  ends, collected = _simulate(settings)
  assert collected == 5 * 20  # 20 env steps per 20 train steps, 100 train steps
  for event in (30, 45, 60, 90, 100):  # checkpoints, exports and the end are call ends
    assert event in ends
  assert all(e % log_interval == 0 or e in ends for e in range(log_interval, 100, log_interval))


def test_resume_mid_chunk_collects_as_the_uninterrupted_run():
  settings = Settings(**BASE)
  whole_ends, whole = _simulate(settings)
  # A bundle at 30 (a checkpoint inside the chunk 20..40) already holds that chunk's collect.
  first = [e for e in whole_ends if e <= 30]
  _, before = _simulate(Settings(**{**BASE, "num_iterations": 30}))
  rest_ends, after = _simulate(settings, start=30)
  assert before + after == whole and first + rest_ends == whole_ends


def _env_steps(root, step: int) -> int:
  marker = root / "train" / "bundles" / f"{step:010d}" / "COMMITTED"
  return json.loads(marker.read_text())["summary"]["env_steps"]


def test_a_job_collects_the_same_whatever_its_log_interval(tmp_path):
  counts = []
  for log_interval in (7, 20):
    root = tmp_path / f"log{log_interval}"
    result = run_train(root, gin_bindings=bindings(
        TINY_DQN, train__collect_envs=1, train__train_steps_per_iteration=20,
        train__collect_steps_per_iteration=20, train__log_interval=log_interval,
        train__eval_interval=0))
    assert result.returncode == 0, result.stderr[-3000:]
    counts.append((_env_steps(root, 20), _env_steps(root, 60)))
  assert counts[0] == counts[1]
  first, last = counts[0]
  assert last - first == 2 * 20  # one collect of 20 env steps per 20 train steps
