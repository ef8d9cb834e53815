"""MinAtar (Young & Tian 2019): five Atari-like games on a 10x10 grid, one
channel per kind of object, as TF-Agents `PyEnvironment`s.

The observation is MinAtar's state as uint8 (10, 10, channels) of 0s and 1s
(MinAtar's is bool); actions are the game's minimal action set (Breakout: 3),
mapped to MinAtar's six. Sticky actions (probability 0.1) and difficulty
ramping are MinAtar's own, as in the paper.
"""

import contextlib
import logging

import gin
import numpy as np
from tf_agents.environments import py_environment, wrappers
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from trainer.config import values
from trainer.errors import ConfigError

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


class _NoLogs(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return False


@contextlib.contextmanager
def _quiet_root_logger():
  """Hides MinAtar's import-time warning on the root logger ("Cannot import
  matplotlib and/or seaborn", only needed to render)."""
  root, hide = logging.getLogger(), _NoLogs()
  root.addFilter(hide)
  try:
    yield
  finally:
    root.removeFilter(hide)


def _import_minatar():
  try:
    with _quiet_root_logger():
      import minatar
  except ModuleNotFoundError as e:
    raise ConfigError("create_minatar_environment needs the Python module 'minatar' (pip "
                      "package minatar), which is not installed: install it into the trainer's "
                      ".venv, or choose another environment") from e
  return minatar


class MinAtarEnvironment(py_environment.PyEnvironment):
  """A MinAtar game; `seed(s)` seeds MinAtar's generator (its sticky actions and
  the game's randomness) for the episodes that follow."""

  def __init__(self, game: str, *, sticky_action_probability: float,
               difficulty_ramping: bool):
    super().__init__(handle_auto_reset=True)  # a step after LAST resets
    minatar = _import_minatar()
    self._env = minatar.Environment(game, sticky_action_prob=sticky_action_probability,
                                    difficulty_ramping=difficulty_ramping)
    self._actions = np.asarray(self._env.minimal_action_set(), np.int64)
    self._observation_spec = array_spec.BoundedArraySpec(
        tuple(self._env.state_shape()), np.uint8, 0, 1, name="observation")
    self._action_spec = array_spec.BoundedArraySpec(
        (), np.int64, 0, len(self._actions) - 1, name="action")

  def observation_spec(self) -> array_spec.BoundedArraySpec:
    return self._observation_spec

  def action_spec(self) -> array_spec.BoundedArraySpec:
    return self._action_spec

  def seed(self, seed: int) -> None:
    self._env.seed(int(seed))

  def _observation(self) -> np.ndarray:
    return self._env.state().astype(np.uint8)

  def _reset(self) -> ts.TimeStep:
    self._env.reset()
    return ts.restart(self._observation())

  def _step(self, action: np.ndarray) -> ts.TimeStep:
    reward, terminal = self._env.act(int(self._actions[int(action)]))
    reward = np.float32(reward)
    if terminal:
      return ts.termination(self._observation(), reward)
    return ts.transition(self._observation(), reward)


@gin.configurable
def create_minatar_environment(
    game: str = "breakout",
    *,
    sticky_action_probability: float = 0.1,
    difficulty_ramping: bool = True,
    max_episode_steps: int | None = None,
) -> py_environment.PyEnvironment:
  """A MinAtar game.

  Args:
    game: one of 'asterix', 'breakout', 'freeway', 'seaquest', 'space_invaders'.
    sticky_action_probability: probability of repeating the previous action, per step.
    difficulty_ramping: the games speed up as an episode goes on (MinAtar's default).
    max_episode_steps: cut an episode after this many env steps (discount 1); None: never.
  """
  knob = "create_minatar_environment"
  if game not in GAMES:
    raise ConfigError(f"{knob}.game={game!r} is not a MinAtar game; use one of {list(GAMES)}")
  p = sticky_action_probability
  if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
    raise ConfigError(f"{knob}.sticky_action_probability must be a number in [0, 1], e.g. 0.1; "
                      f"got {p!r}")
  if not isinstance(difficulty_ramping, bool):
    raise ConfigError(f"{knob}.difficulty_ramping must be True or False; got "
                      f"{difficulty_ramping!r}")
  values.check_max_episode_steps(knob, max_episode_steps)
  env = MinAtarEnvironment(game, sticky_action_probability=float(p),
                           difficulty_ramping=difficulty_ramping)
  return wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env
