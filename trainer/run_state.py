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

import collections
import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.trajectories import time_step as ts

from trainer import envs
from trainer.bundle import Bundle
from trainer.errors import RunDirError
from trainer.rundir import fileio, layout

_RETURN_WINDOW = 10  # episodes in the collect AverageReturn metric


class CollectStats:
  """TF-Agents' collect metrics (`EnvironmentSteps`, `NumberOfEpisodes`,
  `AverageReturnMetric`, `AverageEpisodeLengthMetric`), same rules and names,
  updated with a few NumPy operations per batched step: the four py metrics
  each walk the trajectory in Python, a large share of a cheap environment's
  step.

  Observes batched trajectories (one row per collect environment).
  """

  def __init__(self, num_envs: int, window: int = _RETURN_WINDOW):
    self.env_steps = 0
    self.episodes = 0
    self._returns: collections.deque = collections.deque(maxlen=window)
    self._lengths: collections.deque = collections.deque(maxlen=window)
    self._episode_return = np.zeros(num_envs, np.float64)
    self._episode_length = np.zeros(num_envs, np.int64)

  def __call__(self, traj) -> None:
    first = traj.step_type == ts.StepType.FIRST
    moved = traj.step_type != ts.StepType.LAST  # not an episode boundary
    last = traj.next_step_type == ts.StepType.LAST
    self._episode_return[first] = 0
    self._episode_length[first] = 0
    self._episode_return += traj.reward
    self._episode_length += moved
    self.env_steps += int(np.count_nonzero(moved))
    ended = np.flatnonzero(last)
    self.episodes += len(ended)
    self._returns.extend(self._episode_return[ended].tolist())
    self._lengths.extend(self._episode_length[ended].tolist())

  def results(self) -> dict[str, float]:
    """By TF-Agents' metric names (the summaries' `Metrics/collect/<name>`)."""
    return {"NumberOfEpisodes": self.episodes, "EnvironmentSteps": self.env_steps,
            "AverageReturn": float(np.mean(self._returns)) if self._returns else 0.0,
            "AverageEpisodeLength": float(np.mean(self._lengths)) if self._lengths else 0.0}

  def state(self) -> dict[str, Any]:
    # No running episode: the collect environments start new ones after a restore.
    return {"env_steps": self.env_steps, "episodes": self.episodes,
            "returns": list(self._returns), "lengths": list(self._lengths)}

  def set_state(self, state: dict[str, Any]) -> None:
    self.env_steps, self.episodes = int(state["env_steps"]), int(state["episodes"])
    self._returns.clear()
    self._returns.extend(state["returns"])
    self._lengths.clear()
    self._lengths.extend(state["lengths"])


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
      generator = _env_generator(env)
      if generator is not None and env_state is not None:
        generator.bit_generator.state = env_state


def _env_generator(env: py_environment.PyEnvironment) -> np.random.Generator | None:
  gym_env = envs.gym_env(env)
  generator = getattr(gym_env, "np_random", None) if gym_env is not None else None
  return generator if isinstance(generator, np.random.Generator) else None


def _env_rng_state(env: py_environment.PyEnvironment) -> dict | None:
  generator = _env_generator(env)
  return generator.bit_generator.state if generator is not None else None


def _jsonable(value: Any) -> Any:
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value
