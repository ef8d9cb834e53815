"""Gymnasium environments as TF-Agents `PyEnvironment`s.

Gymnasium (the maintained successor of Gym, which this project pins at 0.23
for TF-Agents) splits an episode's end in two: `terminated` (the task ended:
no value beyond it, discount 0) and `truncated` (a time limit cut it: the
value goes on, discount 1, as TF-Agents' own `TimeLimit` marks it). Seeding
is Gymnasium's `reset(seed=...)`, reached through TF-Agents' `seed()`, which
the project's `seed_environment` calls.
"""

from typing import Any

import gin
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from trainer.config import values
from trainer.errors import ConfigError, one_line

# Modules that Gymnasium's optional families import, and how to install each.
_PIP_PACKAGES = {"Box2D": '"gymnasium[box2d]" (needs swig)', "mujoco": '"gymnasium[mujoco]"',
                 "ale_py": "ale-py", "pygame": "pygame", "minatar": "minatar"}


def space_to_spec(space: Any, name: str) -> array_spec.BoundedArraySpec:
  """The array spec of a Gymnasium `Box` or `Discrete` space (Discrete: a scalar int64)."""
  import gymnasium

  if isinstance(space, gymnasium.spaces.Discrete):
    start = int(space.start)
    return array_spec.BoundedArraySpec((), np.int64, start, start + int(space.n) - 1, name=name)
  if isinstance(space, gymnasium.spaces.Box):
    return array_spec.BoundedArraySpec(space.shape, space.dtype, space.low, space.high, name=name)
  raise ConfigError(f"the Gymnasium environment's {name} space {space} is not supported; "
                    "use one with Box or Discrete spaces (or wrap it in a gymnasium wrapper "
                    "that flattens it)")


class GymnasiumEnvironment(py_environment.PyEnvironment):
  """A Gymnasium environment as a TF-Agents `PyEnvironment`.

  `terminated` ends an episode with discount 0; `truncated` ends it with
  discount 1 (TF-Agents' `ts.truncation`). `seed(s)` resets the Gymnasium
  environment with `reset(seed=s)` at once, and the next `reset()` of this
  environment starts from that seeded first observation (so a generator state
  restored in between, as a resumed job does, applies from the episode after).
  """

  def __init__(self, env: Any):
    super().__init__(handle_auto_reset=True)  # a step after LAST resets
    self._env = env
    self._observation_spec = space_to_spec(env.observation_space, "observation")
    self._action_spec = space_to_spec(env.action_space, "action")
    self._seeded_first: np.ndarray | None = None

  @property
  def gymnasium_env(self) -> Any:
    """The Gymnasium environment, wrappers included."""
    return self._env

  def observation_spec(self) -> array_spec.BoundedArraySpec:
    return self._observation_spec

  def action_spec(self) -> array_spec.BoundedArraySpec:
    return self._action_spec

  def seed(self, seed: int) -> None:
    observation, _ = self._env.reset(seed=int(seed))
    self._seeded_first = observation

  def _observation(self, observation: Any) -> np.ndarray:
    return np.asarray(observation, dtype=self._observation_spec.dtype)

  def _reset(self) -> ts.TimeStep:
    observation, self._seeded_first = self._seeded_first, None
    if observation is None:
      observation, _ = self._env.reset()
    return ts.restart(self._observation(observation))

  def _step(self, action: np.ndarray) -> ts.TimeStep:
    self._seeded_first = None
    if self._action_spec.shape == ():
      action = int(action)
    observation, reward, terminated, truncated, _ = self._env.step(action)
    observation, reward = self._observation(observation), np.float32(reward)
    if terminated:
      return ts.termination(observation, reward)
    if truncated:
      return ts.truncation(observation, reward)
    return ts.transition(observation, reward)

  def close(self) -> None:
    self._env.close()


def make(name: str, knob: str, **kwargs: Any) -> Any:
  """`gymnasium.make(name, **kwargs)`, its failures as one line naming `knob`: a
  missing optional module with its pip package, or an unknown id."""
  import gymnasium

  if name.startswith("ALE/"):
    from trainer.acting import atari

    atari.register()
  try:
    return gymnasium.make(name, **kwargs)
  except gymnasium.error.DependencyNotInstalled as e:
    cause = e.__cause__ or e.__context__
    module = getattr(cause, "name", None) or one_line(e, 120)
    package = _PIP_PACKAGES.get(module, module)
    raise ConfigError(
        f"{knob}={name!r} needs the Python module {module!r} (pip package {package}), which is "
        "not installed: install it into the trainer's .venv, or choose another environment"
    ) from e
  except ModuleNotFoundError as e:
    package = _PIP_PACKAGES.get(e.name, e.name)
    raise ConfigError(
        f"{knob}={name!r} needs the Python module {e.name!r} (pip package {package}), which is "
        "not installed: install it into the trainer's .venv, or choose another environment"
    ) from e
  except Exception as e:  # Gymnasium's own errors for unknown ids and bad arguments.
    raise ConfigError(f"{knob}={name!r} cannot be made: {one_line(e, 300)}; use a registered "
                      "Gymnasium id such as 'CartPole-v1'") from e


@gin.configurable
def create_gymnasium_environment(
    name: str = gin.REQUIRED,
    *,
    max_episode_steps: int | None = None,
    kwargs: dict[str, Any] | None = None,
) -> py_environment.PyEnvironment:
  """A Gymnasium environment for TF-Agents.

  Args:
    name: the Gymnasium id, e.g. 'CartPole-v1' or 'ALE/Pong-v5'.
    max_episode_steps: overrides the registered time limit (env steps; a cut
      episode ends with discount 1); None keeps the registered limit.
    kwargs: keyword arguments of `gymnasium.make` for the environment.
  """
  knob = "create_gymnasium_environment"
  if not isinstance(name, str) or not name:
    raise ConfigError(f"{knob}.name must be a Gymnasium id string such as 'CartPole-v1', "
                      f"got {name!r}")
  values.check_max_episode_steps(knob, max_episode_steps, " for the registered limit")
  if kwargs is not None and not isinstance(kwargs, dict):
    raise ConfigError(f"{knob}.kwargs must be a dict of gymnasium.make's keyword arguments, "
                      f"e.g. {{'sutton_barto_reward': True}}; got {kwargs!r}")
  extra = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
  env = make(name, f"{knob}.name", **(kwargs or {}), **extra)
  return GymnasiumEnvironment(env)
