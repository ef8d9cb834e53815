"""The one builder of a job's parts from its spec: environments, agents, seeds.

Every agent of a config is built here (`create_agent`), each on its own
train-step variable (`create_train_step`): the job's (under the strategy,
`build_parts`), its export copy, the collector role's, `trainer.export`'s and
the config-change check's (`build_agent`). Nothing in the run directory is
touched: a bad config fails here before anything is written.
"""

import dataclasses
import random

import numpy as np
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.environments import py_environment

from trainer.acting import envs
from trainer.loops.spec import JobSpec


def create_train_step(name: str | None = None) -> tf.Variable:
  """A train-step variable, as TF-Agents' `train_utils.create_train_step` makes it
  (counted once under a strategy), optionally named."""
  return tf.Variable(0, trainable=False, dtype=tf.int64, shape=(), name=name,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def create_agent(spec: JobSpec, env: py_environment.PyEnvironment, *,
                 step_name: str | None = None) -> tuple[tf_agent.TFAgent, tf.Variable]:
  """The configured agent on `env`'s specs, with a train-step variable of its own.
  Under a strategy's scope, both are the strategy's."""
  train_step = create_train_step(step_name)
  return spec.agent_fn(env.time_step_spec(), env.action_spec(), train_step), train_step


def build_agent(spec: JobSpec) -> tuple[tf_agent.TFAgent, tf.Variable]:
  """The configured agent alone, on a fresh environment's specs."""
  return create_agent(spec, spec.environment_fn())


def seed_globals(seed: int, step: int) -> None:
  """Seeds the global generators; a resumed job re-seeds from its step."""
  mixed = (seed * 1_000_003 + step) % (2**31)
  random.seed(mixed)
  np.random.seed(mixed)
  tf.random.set_seed(mixed)


@dataclasses.dataclass
class JobParts:
  """What is built before the run directory is touched: the environments and the agents."""

  collect_envs: list[py_environment.PyEnvironment]
  eval_envs: list[py_environment.PyEnvironment]
  strategy: tf.distribute.Strategy
  agent: tf_agent.TFAgent  # its variables, and the train step, under the strategy
  train_step: tf.Variable
  # Exports are written from a copy, so training never waits for them.
  shadow: tf_agent.TFAgent
  shadow_step: tf.Variable


def build_parts(spec: JobSpec, strategy: tf.distribute.Strategy, *, resume_step: int) -> JobParts:
  """Seeds the global generators for `resume_step` (0 for a new run), then builds
  the seeded collect environments, the eval environments and the agents."""
  settings = spec.settings
  seed_globals(settings.seed, resume_step)
  collect_envs = [spec.environment_fn() for _ in range(settings.collect_envs)]
  for i, env in enumerate(collect_envs):
    envs.seed_environment(env, settings.seed if i == 0 else envs.derived_seed(settings.seed, i))
  # One environment per eval episode: the episodes of an eval run side by side.
  eval_envs = [spec.environment_fn() for _ in range(settings.eval_episodes)]
  with strategy.scope():
    agent, train_step = create_agent(spec, collect_envs[0])
  # The Learner traces its loop with autograph, and `strategy.run` would convert
  # the agent's whole train step as well (in TF2 `agent.train` is a plain method:
  # TF-Agents wraps it in `common.function` only under TF1): seconds of start-up
  # for graph code written to run unconverted (canary in tests/test_compat.py).
  agent.train = tf.autograph.experimental.do_not_convert(agent.train)
  # Outside the strategy: exports are strategy-free SavedModels.
  shadow, shadow_step = create_agent(spec, collect_envs[0], step_name="export_train_step")
  return JobParts(collect_envs, eval_envs, strategy, agent, train_step, shadow, shadow_step)
