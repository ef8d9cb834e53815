"""Environment builders. Each returns a fresh, unbatched Python environment."""

import importlib
import pkgutil
import time
from typing import Any

import gin
import gym
import numpy as np
from tf_agents.environments import py_environment, suite_gym, wrappers

from trainer.config import values
from trainer.errors import ConfigError, one_line


@gin.configurable
def create_gym_environment(
    name: str = gin.REQUIRED,
    *,
    max_episode_steps: int | None = None,
    step_seconds: float = 0.0,
) -> py_environment.PyEnvironment:
  """A Gym environment wrapped for TF-Agents.

  Args:
    name: the Gym id, e.g. 'CartPole-v0' or 'Pendulum-v1'.
    max_episode_steps: overrides the environment's own time limit (env steps);
      None keeps the registered limit.
    step_seconds: sleeps this long in every step: a stand-in for a slow
      simulator (the collection benchmarks of the roles); 0 for none.
  """
  if not isinstance(name, str) or not name:
    raise ConfigError(f"create_gym_environment.name must be a Gym id string, got {name!r}")
  values.check_max_episode_steps("create_gym_environment", max_episode_steps,
                                 " for the registered limit")
  if isinstance(step_seconds, bool) or not isinstance(step_seconds, (int, float)) \
      or step_seconds < 0:
    raise ConfigError(f"create_gym_environment.step_seconds must be a number >= 0, got "
                      f"{step_seconds!r}")
  try:
    env = suite_gym.load(name, max_episode_steps=max_episode_steps)
  except Exception as e:  # gym raises its own error types for unknown ids.
    missing = _missing_module(name)
    if missing is not None:
      package = _PIP_PACKAGES.get(missing, missing)
      raise ConfigError(
          f"create_gym_environment.name={name!r} needs the Python module {missing!r} (pip "
          f"package {package}), which is not installed: install it into the trainer's .venv, "
          "or choose another environment"
      ) from e
    raise ConfigError(
        f"create_gym_environment.name={name!r} cannot be made: {one_line(e, 300)}; "
        "use a registered Gym id such as 'CartPole-v0'") from e
  return _SlowSteps(env, step_seconds) if step_seconds else env


class _SlowSteps(wrappers.PyEnvironmentBaseWrapper):
  """Sleeps in every step, as a simulator that takes time would."""

  def __init__(self, env: py_environment.PyEnvironment, seconds: float):
    super().__init__(env)
    self._seconds = seconds

  def _step(self, action):
    time.sleep(self._seconds)
    return self.wrapped_env().step(action)


# Modules that Gym's optional environments import, and the pip package of each.
_PIP_PACKAGES = {"Box2D": "box2d-py", "mujoco_py": "mujoco-py", "ale_py": "ale-py",
                 "atari_py": "atari-py", "pygame": "pygame"}


def _missing_module(name: str) -> str | None:
  """The module a registered environment needs but cannot import, if that is why
  it cannot be made. Gym's optional families (box2d, mujoco, atari) swallow the
  ImportError of their dependency, so the error names an attribute instead
  (`module 'gym.envs.box2d' has no attribute 'LunarLander'`)."""
  try:
    entry_point = gym.spec(name).entry_point
  except Exception:  # not registered: not a missing module
    return None
  if not isinstance(entry_point, str):
    return None
  package = entry_point.split(":")[0]
  try:
    module = importlib.import_module(package)
  except ModuleNotFoundError as e:
    return e.name
  for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
    try:
      importlib.import_module(f"{package}.{info.name}")
    except ModuleNotFoundError as e:
      if e.name and not e.name.startswith(package):
        return e.name
    except Exception:  # another submodule's own trouble: not what is asked here
      continue
  return None


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
  """Seeds the environment's own generator: a Gym environment through Gym's
  `reset(seed=...)` (or, for one written to the older Gym API, such as
  pybullet's, `seed(...)`); any other through TF-Agents' `env.seed(seed)`,
  which this project's Gymnasium and MinAtar environments take (Gymnasium's
  `reset(seed=...)`, MinAtar's `seed`). An environment without seeding is left
  as it is."""
  inner = gym_env(env)
  if inner is None:
    try:
      env.seed(seed)
    except NotImplementedError:  # PyEnvironment's default: no seeding
      pass
    return
  try:
    inner.reset(seed=seed)
  except TypeError as e:
    if "seed" not in str(e):
      raise
    inner.seed(seed)
    inner.reset()


def env_generator(env: py_environment.PyEnvironment) -> np.random.Generator | None:
  """The environment's own NumPy generator (Gym's or Gymnasium's `np_random`),
  which a checkpoint bundle saves and restores; None if it has none."""
  inner = gym_env(env)
  for _ in range(32):
    if inner is not None or not hasattr(env, "wrapped_env"):
      break
    env = env.wrapped_env()
  if inner is None and hasattr(env, "gymnasium_env"):
    inner = env.gymnasium_env.unwrapped
  generator = getattr(inner, "np_random", None) if inner is not None else None
  return generator if isinstance(generator, np.random.Generator) else None
