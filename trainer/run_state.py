"""The run's bookkeeping that a bundle holds besides the agent and the replay.

- collect metrics (TF-Agents py metrics: environment steps, episodes, average
  return and episode length over the last episodes), saved as a TF checkpoint;
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
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.metrics import py_metrics

from trainer import envs, fileio, layout
from trainer.bundle import Bundle

_RETURN_WINDOW = 10  # episodes in the collect AverageReturn metric


class RunState:
  """Counters, metrics, eval history and RNG of one job."""

  def __init__(self, environments: Sequence[py_environment.PyEnvironment]):
    self._environments = list(environments)
    self.env_steps_metric = py_metrics.EnvironmentSteps()
    self.episodes_metric = py_metrics.NumberOfEpisodes()
    self.metrics = [
        self.episodes_metric,
        self.env_steps_metric,
        py_metrics.AverageReturnMetric(buffer_size=_RETURN_WINDOW),
        py_metrics.AverageEpisodeLengthMetric(buffer_size=_RETURN_WINDOW),
    ]
    self.evals: list[tuple[int, float]] = []

  @property
  def env_steps(self) -> int:
    return int(self.env_steps_metric.result())

  @property
  def episodes(self) -> int:
    return int(self.episodes_metric.result())

  @property
  def last_eval_return(self) -> float | None:
    return self.evals[-1][1] if self.evals else None

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
    }

  def save(self, bundle_dir: str, summary: dict[str, Any]) -> None:
    tf.train.Checkpoint(metrics=self.metrics).write(
        os.path.join(bundle_dir, layout.STATE_CKPT_DIR, "state"))
    fileio.atomic_write_json(os.path.join(bundle_dir, layout.STATE_JSON), {
        "summary": summary,
        "evals": [[s, r] for s, r in self.evals],
        "rng": self._rng_state(),
    })

  def restore(self, bundle: Bundle) -> None:
    tf.train.Checkpoint(metrics=self.metrics).read(
        bundle.state_ckpt_prefix).assert_existing_objects_matched()
    state = bundle.state()
    self.evals = [(int(s), float(r)) for s, r in state["evals"]]
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
    # Bundles written before eval environments were seeded per eval also hold theirs, last.
    saved = state["environments"][:len(self._environments)]
    for env, env_state in zip(self._environments, saved, strict=True):
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
