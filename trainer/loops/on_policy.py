"""The on-policy loop (PPO): collect a batch with the current policy, train on it, drop it.

`train.loop = @on_policy_loop`. Each iteration steps every collect environment
`collect_steps_per_iteration / collect_envs` times with the agent's collect
policy (episode boundaries included: the batch is whole trajectories of that
length), then one Learner call trains on the batch (PPO's `num_epochs` passes:
`train_steps_per_iteration` train steps), and the batch is dropped. The
triggers (evaluations, exports, checkpoints, progress) run after the call, so
a bundle is always taken at an iteration boundary, with an empty buffer.
A kill mid-iteration loses that iteration's batch and nothing else: the
resumed job collects a new one with the policy of the bundle.
"""

import gin
from absl import logging

from trainer.errors import EXIT_OK, EXIT_PREEMPTED, ConfigError
from trainer.rundir.signals import StopRequest


@gin.configurable("on_policy_loop")
class OnPolicyLoop:
  """Runs a built job (`loops.job.Job`) to its total."""

  def __init__(self, job, stop: StopRequest):
    self._job = job
    self._settings = job.settings
    self._stop = stop

  @staticmethod
  def check_config(settings, agent, replay_fn) -> None:
    """What an on-policy job needs of its config, each a line naming the fix;
    called before the run directory is touched."""
    epochs = getattr(agent, "_num_epochs", None)  # PPOAgent's; no public accessor
    if epochs is None:
      raise ConfigError("train.loop = @on_policy_loop needs an on-policy agent (train.agent_fn "
                        "= @create_ppo_agent); use @off_policy_loop for this one")
    if settings.train_steps_per_iteration != epochs:
      raise ConfigError(
          f"train.train_steps_per_iteration={settings.train_steps_per_iteration} must equal the "
          f"agent's num_epochs={epochs}: one PPO train call is num_epochs train steps")
    chunk = settings.train_steps_per_iteration
    for name in ("num_iterations", "checkpoint_interval", "policy_export_interval",
                 "eval_interval", "log_interval", "summary_interval"):
      if getattr(settings, name) % chunk:
        raise ConfigError(
            f"train.{name}={getattr(settings, name)} must be a multiple of "
            f"train.train_steps_per_iteration={chunk}: an on-policy job's train step moves "
            "a batch at a time, and its events are at those steps")
    if settings.initial_collect_steps:
      raise ConfigError("train.initial_collect_steps must be 0 with @on_policy_loop (a random "
                        "policy's steps would be trained on as the agent's own)")
    capacity = _bound("create_uniform_replay.capacity")
    if (getattr(replay_fn, "__name__", None) != "create_uniform_replay"
        or capacity != settings.collect_steps_per_iteration):
      raise ConfigError(
          "@on_policy_loop collects into the in-graph replay, one batch at a time: set "
          "train.replay_fn = @create_uniform_replay and create_uniform_replay.capacity = "
          f"{settings.collect_steps_per_iteration} (train.collect_steps_per_iteration)")

  def run(self) -> int:
    job, s = self._job, self._settings
    job.export_missing_at_resume()
    logging.info("Training from step %d to %d, %d train steps per batch of %d env steps.",
                 job.train_step, s.num_iterations, s.train_steps_per_iteration,
                 s.collect_steps_per_iteration)
    job.collector.use(job.agent.collect_policy)
    batches = job.replay.batch_iterator()
    rows = s.collect_steps_per_iteration // s.collect_envs
    while job.train_step < s.num_iterations and not self._stop.requested:
      job.collector.run_batches(rows)
      job.replay.take_batch()
      job.learner.run(iterations=1, iterator=batches)  # then the triggers
    if self._stop.requested:
      job.checkpoint()
      job.flush()
      logging.warning("Stopped at step %d after committing a checkpoint; exiting with code %d "
                      "so the scheduler requeues the job.", job.train_step, EXIT_PREEMPTED)
      return EXIT_PREEMPTED
    if s.eval_interval and job.run_state.eval_return_at(job.train_step) is None:
      job.evaluator()
    job.export()
    job.checkpoint()
    job.flush()
    logging.info("Training complete at step %d (env steps %d, last eval return %s).",
                 job.train_step, job.run_state.env_steps, job.run_state.last_eval_return)
    return EXIT_OK


def _bound(binding: str):
  try:
    return gin.query_parameter(binding)
  except ValueError:  # not bound: the builder's default, which is never a batch's size here
    return None
