"""The run's bookkeeping that a bundle holds besides the agent and the replay.

- collect metrics (`CollectStats`: environment steps, episodes, average return
  and episode length over the last episodes, the running episodes' partial
  sums), saved in `state.json`;
- the evaluation history (train step, average return);
- RNG state: NumPy's and Python's global generators and each environment's
  own generator. TensorFlow's op-level random streams cannot be captured, so
  they are re-seeded from (seed, restored train step) instead;
- a summary of counters in `state.json` that tools read without TensorFlow.
"""

import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from tf_agents.environments import py_environment

from trainer.acting import envs
from trainer.acting.collect_stats import CollectStats
from trainer.checkpoint.bundle_store import Bundle
from trainer.errors import RunDirError
from trainer.rundir import fileio, layout


class RunState:
  """Counters, metrics, eval history and RNG of one job."""

  def __init__(self, environments: Sequence[py_environment.PyEnvironment]):
    self._environments = list(environments)
    self.collect_stats = CollectStats(len(self._environments))
    self.evals: list[tuple[int, float]] = []
    # [start, interval] segments of train.policy_export_interval over the run:
    # which steps must have an export (see policy_index.export_grid).
    self.export_schedule: list[list[int]] = []

  @property
  def env_steps(self) -> int:
    return self.collect_stats.env_steps

  @property
  def episodes(self) -> int:
    return self.collect_stats.episodes

  @property
  def last_eval_return(self) -> float | None:
    return self.evals[-1][1] if self.evals else None

  def follow_export_interval(self, step: int, interval: int) -> None:
    """Starts a schedule segment at `step` if the export interval changed."""
    if not self.export_schedule or self.export_schedule[-1][1] != interval:
      self.export_schedule.append([step, interval])

  def record_eval(self, step: int, average_return: float) -> None:
    self.evals.append((step, average_return))

  def eval_return_at(self, step: int) -> float | None:
    return next((r for s, r in reversed(self.evals) if s == step), None)

  def summary(self, train_step: int, replay_size: int, num_iterations: int) -> dict[str, Any]:
    return {
        "train_step": train_step,
        "env_steps": self.env_steps,
        "episodes": self.episodes,
        "replay_size": replay_size,
        "num_iterations": num_iterations,
        "last_eval_return": self.last_eval_return,
        "export_schedule": [list(segment) for segment in self.export_schedule],
    }

  def save(self, bundle_dir: str, summary: dict[str, Any]) -> None:
    fileio.atomic_write_json(os.path.join(bundle_dir, layout.STATE_JSON), {
        "summary": summary,
        "collect": self.collect_stats.state(),
        "evals": [[s, r] for s, r in self.evals],
        "rng": self._rng_state(),
    })

  def restore(self, bundle: Bundle) -> None:
    state = bundle.state()
    if not isinstance(state, dict) or not {"collect", "evals", "rng", "summary"} <= state.keys():
      raise RunDirError(
          f"checkpoint bundle {bundle.step} has a {layout.STATE_JSON} without counters (written "
          "by a trainer from before CollectStats, which this version does not read); resume it "
          "with the trainer that wrote it, or start a new --root_dir")
    self.collect_stats.set_state(state["collect"])
    self.evals = [(int(s), float(r)) for s, r in state["evals"]]
    # Bundles from before the schedule was recorded: their interval is unknown
    # and the job's current one starts from the restored step.
    self.export_schedule = [list(map(int, seg)) for seg in
                            state["summary"].get("export_schedule", [])]
    self._set_rng_state(state["rng"])

  def _rng_state(self) -> dict[str, Any]:
    py_state = random.getstate()
    return {
        "numpy": _jsonable(np.random.get_state()),
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "environments": [_env_rng_state(env) for env in self._environments],
    }

  def _set_rng_state(self, state: dict[str, Any]) -> None:
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    # Bundles written before eval environments were seeded per eval also hold theirs,
    # last; environments a bundle has no state for keep their seeds.
    for env, env_state in zip(self._environments, state["environments"], strict=False):
      generator = envs.env_generator(env)
      if generator is not None and env_state is not None:
        generator.bit_generator.state = env_state


def _env_rng_state(env: py_environment.PyEnvironment) -> dict | None:
  generator = envs.env_generator(env)
  return generator.bit_generator.state if generator is not None else None


def _jsonable(value: Any) -> Any:
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value
