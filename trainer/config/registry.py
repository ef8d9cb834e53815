"""Imports every module that registers gin configurables, so configs can name them."""

from trainer import agents, envs, pipeline, replay  # noqa: F401
