"""Imports every module that registers gin configurables, so configs can name them."""

from trainer.acting import envs  # noqa: F401
from trainer.agents import dqn, sac  # noqa: F401
from trainer.loops import job  # noqa: F401
from trainer.replay import reverb, uniform  # noqa: F401
