"""The off-policy loop (DQN, SAC): collect into the replay, train from it, in chunks.

`train.loop = @off_policy_loop`. Before training, a random policy fills the
replay to `train.initial_collect_steps`. Then, per chunk of
`train_steps_per_iteration` train steps, `collect_steps_per_iteration` env
steps are collected with the agent's collect policy, and the Learner trains
in calls that end on every event of the schedule (`loops.schedule`).
A stop request (SIGTERM) ends the loop at the next call's end with a
committed bundle and exit code 75.
"""

import gin
import tensorflow as tf
from absl import logging
from tf_agents.agents.ppo import ppo_agent
from tf_agents.policies import random_py_policy

from trainer.config.settings import Settings
from trainer.errors import EXIT_OK, EXIT_PREEMPTED, ConfigError, TrainingError
from trainer.loops import schedule
from trainer.loops.job_view import JobView
from trainer.rundir.signals import StopRequest

_INITIAL_COLLECT_CHUNK = 250  # env steps between checks for a stop request


def collects_before(settings: Settings, step: int) -> bool:
  """Whether `collect_steps_per_iteration` env steps are collected before
  training from `step`: once per chunk, at its start, so the collect:train
  ratio is exact whatever the intervals that cut a chunk into calls (and
  after a resume mid-chunk, that chunk's collect is already in the replay)."""
  return step % settings.train_steps_per_iteration == 0


@gin.configurable("off_policy_loop")
class OffPolicyLoop:
  """Runs a built job to its total.

  A subclass varies it through the public hooks below (`checkpoint_at_stop`,
  `on_finished`, `on_stopped`) and the phases `initial_collect` and `train`.
  """

  def __init__(self, job: JobView, stop: StopRequest):
    self._job = job
    self._settings = job.settings
    self._stop = stop
    self._iterator = None  # the Learner's, made when training starts

  @staticmethod
  def check_config(settings, agent, replay_fn, strategy) -> None:
    """Called before the run directory is touched."""
    del settings, replay_fn, strategy
    if isinstance(agent, ppo_agent.PPOAgent):
      raise ConfigError("an on-policy agent (PPO) trains on the batch it just collected: set "
                        "train.loop = @on_policy_loop (with train.agent_fn = @create_ppo_agent)")

  def run(self) -> int:
    job = self._job
    job.export_missing_at_resume()
    self.initial_collect()
    if not self._stop.requested:
      logging.info("Training from step %d to %d.", job.train_step, self._settings.num_iterations)
      self.train(until_step=self._settings.num_iterations)
    if self._stop.requested:
      return self._stop_now()
    self._finish()
    self.on_finished()
    return EXIT_OK

  def initial_collect(self) -> None:
    """Fills the replay with a random policy up to `train.initial_collect_steps`
    (skipped when the restored replay already holds that many)."""
    job, target = self._job, self._settings.initial_collect_steps
    if job.replay.size() >= target:
      if target:
        logging.info("Replay holds %d items (>= %d): skipping the initial collect.",
                     job.replay.size(), target)
      return
    logging.info("Initial collect: random policy until the replay holds %d items.", target)
    env = job.collect_envs[0]
    job.collector.use(random_py_policy.RandomPyPolicy(
        env.time_step_spec(), env.action_spec(), outer_dims=(len(job.collect_envs),)))
    while (size := job.replay.size()) < target and not self._stop.requested:
      job.collector.run(steps=min(target - size, _INITIAL_COLLECT_CHUNK))

  def train(self, until_step: int) -> None:
    """Collects and trains (triggers included) until the train step reaches
    `until_step` or a stop is requested."""
    job, s = self._job, self._settings
    if self._iterator is None:
      job.collector.use(job.agent.collect_policy)
      self._iterator = job.replay.iterator(job.replica_batch_size, job.strategy)
    step = job.train_step
    while step < until_step and not self._stop.requested:
      if collects_before(s, step):
        job.collector.run(s.collect_steps_per_iteration)
      iterations = schedule.steps_until_next_event(s, step, until_step)
      job.replay.prepare(iterations)
      self._learn(step, iterations)
      step = job.train_step

  def _learn(self, step: int, iterations: int) -> None:
    try:
      self._job.learner.run(iterations=iterations, iterator=self._iterator)
    except tf.errors.InvalidArgumentError as e:
      if "Loss is inf or nan" not in e.message:
        raise
      latest = self._job.store.latest()
      raise TrainingError(
          f"training diverged between train steps {step} and {step + iterations}: the loss "
          f"became inf or nan. Nothing was committed after bundle "
          f"{latest.step if latest else '(none)'}, which is intact. Lower the agent's learning "
          "rate or reward scale (e.g. create_dqn_agent.learning_rate, "
          "create_dqn_agent.reward_scale_factor) and resume with --allow_config_change, or "
          "start a new --root_dir") from e

  def _finish(self) -> None:
    job = self._job
    step = job.train_step
    if self._settings.eval_interval and job.run_state.eval_return_at(step) is None:
      job.evaluator()
    job.export()
    job.checkpoint()
    job.flush()
    logging.info("Training complete at step %d (env steps %d, last eval return %s).", step,
                 job.run_state.env_steps, job.run_state.last_eval_return)

  def _stop_now(self) -> int:
    job = self._job
    self.checkpoint_at_stop()
    job.flush()
    logging.warning("Stopped at step %d after committing a checkpoint; exiting with code %d "
                    "so the scheduler requeues the job.", job.train_step, EXIT_PREEMPTED)
    self.on_stopped()
    return EXIT_PREEMPTED

  # --- hooks: a subclass (the learner role's loop) extends these -------------

  def checkpoint_at_stop(self) -> None:
    """Commits the stop's bundle (the learner role's waits for a restarting server)."""
    self._job.checkpoint()

  def on_finished(self) -> None:
    """Called once the job reached its total, its last bundle committed."""

  def on_stopped(self) -> None:
    """Called once a stopped job's bundle is committed, before it exits 75."""

