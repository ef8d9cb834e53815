"""Periodic evaluation of the greedy policy with TF-Agents' eval Actor."""

import os
import time

import tensorflow as tf
from absl import logging
from tf_agents.agents import tf_agent
from tf_agents.environments import py_environment
from tf_agents.policies import greedy_policy, py_tf_eager_policy
from tf_agents.train import actor

from trainer import layout
from trainer.run_state import RunState


class Evaluator:
  """Runs `episodes` greedy episodes and records the average return.

  Results go to the run state (so bundles hold the eval history), to eval
  summaries under `DIR/eval`, and to `DIR/eval/returns.csv`.
  """

  def __init__(self, root_dir: str, env: py_environment.PyEnvironment,
               agent: tf_agent.TFAgent, train_step: tf.Variable, run_state: RunState,
               *, episodes: int):
    self._run_state = run_state
    self._train_step = train_step
    self._episodes = episodes
    self._metrics = actor.eval_metrics(episodes)
    self._csv_path = os.path.join(root_dir, layout.EVAL_RETURNS_FILE)
    self._actor = actor.Actor(
        env,
        # The mode of the policy's action distribution (argmax for DQN, mean for SAC).
        py_tf_eager_policy.PyTFEagerPolicy(greedy_policy.GreedyPolicy(agent.policy),
                                           use_tf_function=True),
        train_step,
        episodes_per_run=episodes,
        metrics=self._metrics,
        summary_dir=os.path.join(root_dir, layout.EVAL_DIR),
        summary_interval=1,
        name="eval")

  @property
  def summary_writer(self):
    return self._actor.summary_writer

  def __call__(self) -> float:
    start = time.monotonic()
    for metric in self._metrics:
      metric.reset()
    self._actor.reset()
    self._actor.run()
    self._actor.write_metric_summaries()
    average_return = float(self._metrics[0].result())
    step = int(self._train_step.numpy())
    self._run_state.evals.append((step, average_return))
    self._append_csv(step, average_return)
    logging.info("Eval at step %d: average return %.2f over %d episodes (%.1f s).", step,
                 average_return, self._episodes, time.monotonic() - start)
    return average_return

  def _append_csv(self, step: int, average_return: float) -> None:
    new = not os.path.exists(self._csv_path)
    with open(self._csv_path, "a") as f:
      if new:
        f.write("train_step,average_return\n")
      f.write(f"{step},{average_return:.6f}\n")
