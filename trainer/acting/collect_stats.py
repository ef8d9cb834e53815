"""TF-Agents' collect metrics, kept in NumPy: what a bundle saves of the collection."""

import collections
from typing import Any

import numpy as np
from tf_agents.trajectories import time_step as ts

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
