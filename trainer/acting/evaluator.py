"""Periodic evaluation of the greedy policy."""

import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tf_agents.agents import tf_agent
from tf_agents.environments import py_environment
from tf_agents.policies import greedy_policy
from tf_agents.utils import nest_utils

from trainer.acting import envs as envs_lib
from trainer.acting.collector import batched_action_function
from trainer.rundir import layout


class Evaluator:
  """Runs one greedy episode per environment and records the average return.

  Results go to `record` (the run state: bundles hold the eval history), to eval
  summaries under `DIR/eval` (`Metrics/eval/AverageReturn` and
  `.../AverageEpisodeLength`, as TF-Agents' eval Actor names them), and to
  `DIR/eval/returns.csv`.

  The episodes run side by side, one environment each, around one
  `tf.function` with a fixed input signature: one policy call per step for
  all episodes, where TF-Agents' Actor with a `PyTFEagerPolicy` makes one per
  episode step, each paying the eager call's overhead: an evaluation holds
  up training, so its cost is kept to the episodes' steps.
  """

  def __init__(self, root_dir: str, envs: Sequence[py_environment.PyEnvironment],
               agent: tf_agent.TFAgent, train_step: tf.Variable,
               record: Callable[[int, float], None], env_steps: Callable[[], int],
               *, seed: int):
    self._envs = list(envs)
    self._record = record  # (train step, average return): into the run state
    # The collect env steps so far, for returns.csv and the log line; called once
    # per evaluation (the learner role refreshes its counters from the server).
    self._env_steps = env_steps
    self._train_step = train_step
    self._seed = seed
    episodes = len(self._envs)
    self._csv_path = os.path.join(root_dir, layout.EVAL_RETURNS_FILE)
    # The mode of the policy's action distribution (argmax for DQN, mean for SAC).
    policy = greedy_policy.GreedyPolicy(agent.policy)
    self._initial_state = policy.get_initial_state(episodes)
    self._action = batched_action_function(policy, episodes)
    self.summary_writer = tf.summary.create_file_writer(os.path.join(root_dir, layout.EVAL_DIR))

  def run_episodes(self, step: int) -> tuple[list[float], list[int]]:
    """Returns and lengths of the greedy episodes, one per environment, run side
    by side: one policy call per step for all of them. Each environment is
    seeded from (seed, step, episode), so an eval depends only on the policy
    and the step, not on what ran before it (a resumed job evaluates as an
    uninterrupted one)."""
    time_steps = []
    for i, env in enumerate(self._envs):
      envs_lib.seed_environment(env, envs_lib.derived_seed(self._seed, step, i))
      time_steps.append(env.reset())
    state = self._initial_state
    returns, lengths = [0.0] * len(self._envs), [0] * len(self._envs)
    running = [True] * len(self._envs)
    while any(running):
      action, state, _ = self._action(nest_utils.stack_nested_arrays(time_steps), state)
      actions = nest_utils.unstack_nested_arrays(tf.nest.map_structure(lambda a: a.numpy(), action))
      for i, env in enumerate(self._envs):
        if running[i]:  # A finished episode's slot rides along; its actions are ignored.
          time_steps[i] = env.step(actions[i])
          returns[i] += float(time_steps[i].reward)
          lengths[i] += 1
          running[i] = not time_steps[i].is_last()
    return returns, lengths

  def __call__(self) -> float:
    start = time.monotonic()
    step = int(self._train_step.numpy())
    env_steps = self._env_steps()  # those that trained the policy evaluated, read once
    returns, lengths = self.run_episodes(step)
    average_return = float(np.mean(returns))
    with self.summary_writer.as_default():
      tf.summary.scalar("Metrics/eval/AverageReturn", average_return, step=step)
      tf.summary.scalar("Metrics/eval/AverageEpisodeLength", float(np.mean(lengths)), step=step)
    self._record(step, average_return)
    self._append_csv(step, average_return, env_steps)
    logging.info("Eval at step %d: average return %.2f over %d episodes, env steps %d (%.1f s).",
                 step, average_return, len(self._envs), env_steps, time.monotonic() - start)
    return average_return

  def _append_csv(self, step: int, average_return: float, env_steps: int) -> None:
    """One row per evaluation; a resumed job that evaluates a step again appends
    it again (readers keep the last row of a step: `trainer.plot`)."""
    new = not os.path.exists(self._csv_path)
    with open(self._csv_path, "a") as f:
      if new:
        f.write("train_step,average_return,env_steps\n")
      f.write(f"{step},{average_return:.6f},{env_steps}\n")
