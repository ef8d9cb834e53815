"""Atari 2600 games (the Arcade Learning Environment, through Gymnasium) with
the preprocessing of Machado et al. 2018, "Revisiting the Arcade Learning
Environment" (as Dopamine runs it):

- sticky actions: with probability `sticky_action_probability` (0.25) the
  emulator repeats the previous action instead of the chosen one, each frame;
- `frame_skip` (4) frames per agent step, the reward summed, the observation
  the pixel-wise max of the last two frames (flicker); grayscale, resized to
  `screen_size` x `screen_size` (84) (Gymnasium's `AtariPreprocessing`);
- up to `noop_max` (30) no-op steps at an episode's start;
- no signal at a life's loss (`terminal_on_life_loss = False`): only game over
  ends an episode (discount 0);
- the minimal action set unless `full_action_space`;
- an episode cut at `max_episode_frames` (108,000 emulator frames, 30 minutes
  of play; discount 1);
- the last `frame_stack` (4) frames as the observation, uint8
  (screen_size, screen_size, frame_stack): see `trainer.acting.frames`.
"""

import functools

import gin
from tf_agents.environments import py_environment

from trainer.acting.frames import FrameStack
from trainer.acting.gymnasium_env import GymnasiumEnvironment, make
from trainer.errors import ConfigError

_EXAMPLES = "'Pong', 'Breakout', 'SpaceInvaders', 'Seaquest', 'MsPacman'"


@functools.cache
def register() -> None:
  """Registers ALE's games with Gymnasium (`ALE/<Game>-v5`), once, with ALE's own
  start-up banner and log lines turned off (errors still print)."""
  import ale_py
  import gymnasium

  ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
  gymnasium.register_envs(ale_py)


def games() -> list[str]:
  """The games ALE provides, as `create_atari_environment.game` names them."""
  import gymnasium

  register()
  return sorted(key[len("ALE/"):-len("-v5")] for key in gymnasium.registry
                if key.startswith("ALE/") and key.endswith("-v5"))


def _game_id(game: str) -> str:
  """The Gymnasium id of a game ('Pong', or 'pong', or 'space_invaders')."""
  known = {name.lower(): name for name in games()}
  key = game.replace("_", "").lower() if isinstance(game, str) else None
  if key not in known:
    raise ConfigError(f"create_atari_environment.game={game!r} is not an ALE game; use one of "
                      f"the {len(known)} ALE games, e.g. {_EXAMPLES}")
  return f"ALE/{known[key]}-v5"


def _check_int(knob: str, value, minimum: int, example: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(f"create_atari_environment.{knob} must be an int >= {minimum}, e.g. "
                      f"{example}; got {value!r}")


def _check(sticky_action_probability, frame_skip, screen_size, noop_max, frame_stack,
           max_episode_frames, terminal_on_life_loss, full_action_space) -> None:
  p = sticky_action_probability
  if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
    raise ConfigError("create_atari_environment.sticky_action_probability must be a number in "
                      f"[0, 1], e.g. 0.25 (Machado et al.); got {p!r}")
  _check_int("frame_skip", frame_skip, 1, 4)
  _check_int("screen_size", screen_size, 8, 84)
  _check_int("noop_max", noop_max, 0, 30)
  _check_int("frame_stack", frame_stack, 1, 4)
  _check_int("max_episode_frames", max_episode_frames, 1, 108_000)
  for knob, value in (("terminal_on_life_loss", terminal_on_life_loss),
                      ("full_action_space", full_action_space)):
    if not isinstance(value, bool):
      raise ConfigError(f"create_atari_environment.{knob} must be True or False; got {value!r}")


@gin.configurable
def create_atari_environment(
    game: str = "Pong",
    *,
    sticky_action_probability: float = 0.25,
    frame_skip: int = 4,
    screen_size: int = 84,
    noop_max: int = 30,
    terminal_on_life_loss: bool = False,
    frame_stack: int = 4,
    full_action_space: bool = False,
    max_episode_frames: int = 108_000,
) -> py_environment.PyEnvironment:
  """An ALE game with Machado et al.'s preprocessing (the module's docstring).

  Args:
    game: the ALE game, e.g. 'Pong' or 'SpaceInvaders'.
    sticky_action_probability: probability of repeating the previous action, per frame.
    frame_skip: emulator frames per agent step.
    screen_size: the side of the square grayscale frame (pixels).
    noop_max: at most this many no-op steps at an episode's start (0: none).
    terminal_on_life_loss: end an episode (discount 0) at each lost life.
    frame_stack: frames in the observation (its last axis, newest last).
    full_action_space: all 18 actions instead of the game's minimal set.
    max_episode_frames: emulator frames after which an episode is cut (discount 1).
  """
  _check(sticky_action_probability, frame_skip, screen_size, noop_max, frame_stack,
         max_episode_frames, terminal_on_life_loss, full_action_space)
  import gymnasium

  env = make(_game_id(game), "create_atari_environment.game", frameskip=1,
             repeat_action_probability=float(sticky_action_probability),
             full_action_space=full_action_space, max_num_frames_per_episode=max_episode_frames)
  env = gymnasium.wrappers.AtariPreprocessing(
      env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
      terminal_on_life_loss=terminal_on_life_loss, grayscale_obs=True)
  return FrameStack(GymnasiumEnvironment(env), frame_stack)
