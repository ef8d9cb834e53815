"""Imports every module that registers gin configurables, so configs can name them.

The commands import this before parsing a config; nothing below the commands
imports it, so the imports run one way.
"""

from trainer.acting import atari, envs, gymnasium_env, minatar_env  # noqa: F401
from trainer.agents import c51, dqn, ppo, sac, td3  # noqa: F401
from trainer.learning import strategies  # noqa: F401
from trainer.loops import job, off_policy, on_policy  # noqa: F401
from trainer.replay import frame_replay, reverb, uniform  # noqa: F401
from trainer.roles import tables  # noqa: F401  (rate_control.*)
