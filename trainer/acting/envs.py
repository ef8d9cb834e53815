"""Environment builders. Each returns a fresh, unbatched Python environment."""

from typing import Any

import gin
import numpy as np
from tf_agents.environments import py_environment, suite_gym

from trainer.errors import ConfigError


@gin.configurable
def create_gym_environment(
    name: str = gin.REQUIRED,
    *,
    max_episode_steps: int | None = None,
) -> py_environment.PyEnvironment:
  """A Gym environment wrapped for TF-Agents.

  Args:
    name: the Gym id, e.g. 'CartPole-v0' or 'Pendulum-v1'.
    max_episode_steps: overrides the environment's own time limit (env steps);
      None keeps the registered limit.
  """
  if not isinstance(name, str) or not name:
    raise ConfigError(f"create_gym_environment.name must be a Gym id string, got {name!r}")
  if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or not isinstance(
      max_episode_steps, int) or max_episode_steps <= 0):
    raise ConfigError("create_gym_environment.max_episode_steps must be a positive int (env "
                      f"steps) or None for the registered limit, got {max_episode_steps!r}")
  try:
    return suite_gym.load(name, max_episode_steps=max_episode_steps)
  except Exception as e:  # gym raises its own error types for unknown ids.
    raise ConfigError(
        f"create_gym_environment.name={name!r} cannot be made: {e}; "
        "use a registered Gym id such as 'CartPole-v0'") from e


def gym_env(env: py_environment.PyEnvironment) -> Any | None:
  """The innermost Gym environment under TF-Agents' wrappers, if any."""
  for _ in range(32):
    if hasattr(env, "gym"):
      return env.gym.unwrapped
    if not hasattr(env, "wrapped_env"):
      return None
    env = env.wrapped_env()
  return None


def derived_seed(*keys: int) -> int:
  """A 32-bit seed drawn from a tuple of keys (e.g. run seed, step, index)."""
  return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def seed_environment(env: py_environment.PyEnvironment, seed: int) -> None:
  """Seeds the environment's own generator (Gym's `reset(seed=...)`)."""
  inner = gym_env(env)
  if inner is not None:
    inner.reset(seed=seed)
