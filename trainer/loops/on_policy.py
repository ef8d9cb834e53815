"""The on-policy loop (PPO): collect a batch with the current policy, train on it, drop it.

`train.loop = @on_policy_loop`. Each iteration steps every collect environment
`collect_steps_per_iteration / collect_envs` times with the agent's collect
policy (episode boundaries included: the batch is whole trajectories of that
length), then one Learner call trains on the batch (PPO's `num_epochs` passes,
whole or in minibatches: `train_steps_per_iteration` train steps, see
`agents/ppo.py`), and the batch is dropped. The
triggers (evaluations, exports, checkpoints, progress) run after the call, so
a bundle is always taken at an iteration boundary, with an empty buffer.
A kill mid-iteration loses that iteration's batch and nothing else: the
resumed job collects a new one with the policy of the bundle.

The replay holds exactly one batch: its capacity is
`train.collect_steps_per_iteration`, which the loop passes to
`create_uniform_replay` (`replay_options`), so a config sets only the latter.
A `create_uniform_replay.capacity` binding equal to it is accepted (configs
and runs from before); one that differs is refused in one line before the run
directory is touched.
"""

import gin
import tensorflow as tf
from absl import logging

from trainer.agents.ppo import PPOClipAgent
from trainer.compat import tf_agents as compat_tf_agents
from trainer.errors import EXIT_OK, EXIT_PREEMPTED, ConfigError
from trainer.loops.job_view import JobView
from trainer.rundir.signals import StopRequest


@gin.configurable("on_policy_loop")
class OnPolicyLoop:
  """Runs a built job to its total."""

  def __init__(self, job: JobView, stop: StopRequest):
    self._job = job
    self._settings = job.settings
    self._stop = stop

  @staticmethod
  def check_config(settings, agent, replay_fn, strategy) -> None:
    """What an on-policy job needs of its config, each a line naming the fix;
    called before the run directory is touched."""
    if not isinstance(agent, PPOClipAgent):
      raise ConfigError("train.loop = @on_policy_loop needs trainer's PPO agent (train.agent_fn "
                        "= @create_ppo_agent); use @off_policy_loop for an off-policy agent")
    if strategy.num_replicas_in_sync > 1:
      raise ConfigError(
          f"@on_policy_loop trains on one device; train.strategy has "
          f"{strategy.num_replicas_in_sync} replicas: use train.strategy = @default_strategy")
    batch = settings.collect_steps_per_iteration
    if agent.minibatch_size is not None and agent.minibatch_size > batch:
      raise ConfigError(
          f"create_ppo_agent.minibatch_size={agent.minibatch_size} is larger than a batch "
          f"(train.collect_steps_per_iteration={batch}): lower it")
    per_batch = agent.train_steps_per_batch(batch)
    if settings.train_steps_per_iteration != per_batch:
      how = (f"num_epochs={agent.passes}" if agent.minibatch_size is None else
             f"num_epochs={agent.passes} x ({batch} // minibatch_size={agent.minibatch_size})")
      raise ConfigError(
          f"train.train_steps_per_iteration={settings.train_steps_per_iteration} must be "
          f"{per_batch}, the train steps PPO takes per batch: {how}")
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
    if getattr(replay_fn, "__name__", None) != "create_uniform_replay":
      raise ConfigError("@on_policy_loop collects into the in-graph replay, one batch at a time: "
                        "set train.replay_fn = @create_uniform_replay")
    capacity = _bound("create_uniform_replay.capacity")
    if capacity is not None and capacity != settings.collect_steps_per_iteration:
      raise ConfigError(
          f"create_uniform_replay.capacity={capacity} differs from "
          f"train.collect_steps_per_iteration={settings.collect_steps_per_iteration}: with "
          "@on_policy_loop the replay holds one batch and its capacity is set from "
          "train.collect_steps_per_iteration; drop the capacity binding")

  # The replay builder's parameter that `replay_options` sets, and the binding it
  # comes from (`config_change`: a resumed run's capacity follows that binding).
  derived_replay_bindings = {"capacity": "train.collect_steps_per_iteration"}

  @staticmethod
  def replay_options(settings) -> dict[str, int]:
    """What the job passes its replay builder: room for one batch."""
    return {"capacity": settings.collect_steps_per_iteration}

  def run(self) -> int:
    job, s = self._job, self._settings
    job.export_missing_at_resume()
    logging.info("Training from step %d to %d, %d train steps per batch of %d env steps.",
                 job.train_step, s.num_iterations, s.train_steps_per_iteration,
                 s.collect_steps_per_iteration)
    job.collector.use(job.agent.collect_policy)
    rows = s.collect_steps_per_iteration // s.collect_envs
    if job.agent.minibatch_size is None:  # one Learner iteration: the agent's num_epochs passes
      batches, iterations = job.replay.batch_iterator(), 1
    else:
      batches = Minibatches(job.agent, job.replay.buffer, rows * s.collect_envs)
      iterations = s.train_steps_per_iteration
    while job.train_step < s.num_iterations and not self._stop.requested:
      job.collector.run_batches(rows)
      job.replay.take_batch(batches)
      job.learner.run(iterations=iterations, iterator=batches)  # then the triggers
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


class Minibatches:
  """The Learner's iterator over one batch in PPO's minibatches, as TF-Agents'
  `PPOLearner` makes them.

  `fill()` (graph code, once per batch, before the buffer is emptied) updates
  the agent's observation and reward normalizers with the batch, computes its
  value predictions' advantages and returns over each environment's whole
  sequence (`agent.preprocess_sequence`), keeps the batch's steps in
  variables, and draws the order of every pass: a fresh shuffle of the steps
  per pass, cut into minibatches (a remainder smaller than a minibatch sits
  out that pass). Each `next` in the Learner's graph gathers the next
  minibatch, shaped [minibatch_size, 1, ...] (single steps, as the agent's
  loss needs no sequences). Each environment's last step has no advantage
  yet and is masked out of the loss by the agent, as in `PPOLearner`.
  """

  def __init__(self, agent: PPOClipAgent, buffer, steps: int):
    self._agent, self._buffer = agent, buffer
    self._minibatch_size = agent.minibatch_size
    self._per_pass = steps // agent.minibatch_size
    self._passes = agent.passes
    info = dict(agent.collect_data_spec.policy_info)  # + what preprocess_sequence adds
    info["return"] = info["advantage"] = tf.TensorSpec([], tf.float32)
    self._spec = agent.collect_data_spec._replace(policy_info=info)
    self._steps = [tf.Variable(tf.zeros([steps, *spec.shape], spec.dtype), trainable=False,
                               name="ppo_batch_steps")
                   for spec in tf.nest.flatten(self._spec)]
    self._order = tf.Variable(
        tf.zeros([self._passes * self._per_pass, self._minibatch_size], tf.int32),
        trainable=False, name="ppo_minibatch_order")
    self._cursor = tf.Variable(0, dtype=tf.int32, trainable=False, name="ppo_minibatch_cursor")
    self._fill = tf.function(self._prepare, autograph=False)

  def _prepare(self) -> None:
    batch = compat_tf_agents.gather_all(self._buffer)  # [environments, steps of each, ...]
    # No-ops for a normalizer that is off. Automatic control dependencies order the
    # updates before the reads of the normalizers' variables below.
    self._agent.update_observation_normalizer(batch.observation)
    self._agent.update_reward_normalizer(batch.reward)
    processed = self._agent.preprocess_sequence(batch)  # with the updated normalizers
    steps = self._steps[0].shape[0]
    for variable, values in zip(self._steps, tf.nest.flatten(processed), strict=True):
      variable.assign(tf.reshape(values, [steps, *values.shape[2:]]))
    cut = self._per_pass * self._minibatch_size
    order = [tf.random.shuffle(tf.range(steps))[:cut] for _ in range(self._passes)]
    self._order.assign(tf.reshape(tf.concat(order, 0), self._order.shape))
    self._cursor.assign(0)

  def fill(self) -> None:
    self._fill()

  def __iter__(self):
    return self

  def __next__(self):
    """Graph code: the next minibatch, as `(experience, info)`."""
    index = self._cursor.assign_add(1) - 1
    rows = tf.gather(self._order, index)
    steps = [tf.expand_dims(tf.gather(v, rows), 1) for v in self._steps]
    return tf.nest.pack_sequence_as(self._spec, steps), None


def _bound(binding: str):
  try:
    return gin.query_parameter(binding)
  except ValueError:  # not bound: the loop sets it
    return None
