"""The learner role: the single-process job's Learner, fed by the replay server.

It is `trainer.train`'s job (the same bundle, triggers, exports, evaluations,
SIGTERM -> bundle -> 75) with two parts swapped: the replay is the server's
table (`ReverbReplay` at the server's address), and the loop
(`LearnerLoop`) trains without collecting: the collectors fill the replay, and
the table's rate limiter keeps the config's collect:train ratio.

- After every Learner call it pushes the policy weights and the train step to
  the server's `variables` table, where the collectors pull them.
- At a checkpoint step it writes the agent and the env steps and episodes
  summed over the collectors' counters, then, in a thread while training goes
  on, asks the server for a checkpoint of all its tables (the replay, the
  weights, the collectors' counters: one instant), moves it into the bundle and
  commits it (a collector's chunk written after the counters were read is in
  the bundle's replay, and counted by the next bundle). The next checkpoint,
  and a stop's, wait for it.
- A server that stops answering is waited for; then the learner reconnects
  (a restarted server holds the newest bundle's replay) and goes on from its
  own step. A checkpoint that the gone server could not write is taken again.
"""

import dataclasses
import functools
import os
import time

import reverb
import tensorflow as tf
from absl import logging
from tf_agents.agents.ppo import ppo_agent

from trainer.errors import ConfigError, RunDirError
from trainer.loops import job as job_lib
from trainer.loops import schedule
from trainer.loops.job_view import JobView
from trainer.loops.off_policy import OffPolicyLoop
from trainer.replay.reverb import ReplayResetError, ReverbReplay
from trainer.roles import auth, connection, rolefiles, tables, weights
from trainer.rundir import layout
from trainer.rundir.signals import StopRequest

SAMPLE_TIMEOUT_MS = 10_000  # the dataset ends after this long without a sample: stop requests are seen
_WAIT_LOG_S = 30.0
_RESTART_WAIT_S = 120.0  # for a server that found its replay emptied to restart
_INFO_TIMEOUT_S = 30  # a server that does not answer server_info in this long is gone


class ServerCounters:
  """The env steps and episodes summed over the collectors' counters on the
  server, of the records that verify (`auth`): the job's `refresh_counters`."""

  def __init__(self, root_dir: str):
    self._root = root_dir
    self._rejections = auth.Rejections("Learner")
    self._counted: dict[int, tuple[int, int]] = {}  # each collector's accepted counters

  @functools.cached_property
  def key(self) -> bytes:
    """The job's secret, read once (by the loop, when the job holds the run directory)."""
    return auth.job_key(self._root)

  def forget(self) -> None:
    """A restarted server's counters are its checkpoint's: none accepted yet."""
    self._counted.clear()

  def refresh(self, job: JobView) -> None:
    """Reads them into `job.run_state`. A server that does not answer leaves
    them as they were (lower than the truth, never higher: its checkpoint for a
    bundle fails as well)."""
    replay = job.replay
    try:
      counters = tables.read_counters(replay.client, self.key, timeout=10)
      inserted = replay.inserted()  # after the counters: it holds every counted step
    except connection.ERRORS:
      return
    counted = self._accept_counters(counters)
    env_steps = sum(c[0] for c in counted.values())
    episodes = sum(c[1] for c in counted.values())
    if not auth.plausible_total(env_steps, episodes, inserted,
                                sequence_length=job.agent.train_sequence_length,
                                open_episodes=len(counted) * job.settings.collect_envs):
      self._rejections.reject("implausible", f"the collectors' counters add up to {env_steps} "
                              f"env steps, more than the {inserted} items that reached the "
                              "replay account for")
      return
    self._counted = counted
    stats = job.run_state.collect_stats
    stats.env_steps, stats.episodes = env_steps, episodes

  def _accept_counters(self, counters: tables.Counters) -> dict[int, tuple[int, int]]:
    """Each collector's counters: the signed record, unless it goes back from
    what this learner accepted of the same server process (an old record
    replayed); a collector whose record is forged or gone keeps its last."""
    counted = dict(self._counted)
    for task in counters.forged:
      self._rejections.reject("counters", f"collector {task}'s counters on the replay server do "
                              "not carry the job's signature")
    for task, (env_steps, episodes) in counters.signed.items():
      before = counted.get(task, (0, 0))
      if env_steps < before[0] or episodes < before[1]:
        self._rejections.reject("replayed", f"collector {task}'s signed counters went back from "
                                f"{before[0]} to {env_steps} env steps on the same server "
                                "process (an old record written again)")
        continue
      counted[task] = (env_steps, episodes)
    return counted


class LearnerLoop(OffPolicyLoop):
  """Trains from the server's replay to the job's total; see the module doc."""

  def __init__(self, job: JobView, stop: StopRequest, *, link: connection.ServerLink,
               counters: ServerCounters):
    super().__init__(job, stop)
    self.link, self._counters = link, counters
    self._heartbeat = rolefiles.Heartbeat(job.root_dir, rolefiles.LEARNER)
    self._control = tables.rate_control(job.settings)
    self._key = counters.key
    self._session = weights.new_session()
    self._pusher = weights.Pusher(self._key, self._session,
                                  tf.nest.flatten(job.agent.collect_policy.variables()),
                                  job.train_step_variable)
    # Which server process this learner talks to: one that restarted (even at once) is another.
    self._incarnation = rolefiles.server_incarnation(job.root_dir)
    self._beat(force=True, train_step=job.train_step)  # names the session before any push

  def initial_collect(self) -> None:
    """The collectors fill the replay: waits until it can be sampled."""
    self._push()
    need, last_log = self._control.min_size_to_sample, None
    while not self._stop.requested:
      try:
        size = self._job.replay.size()
      except connection.ERRORS as e:
        self._reconnect(e)
        continue
      if size >= need:
        return
      if last_log is None or time.monotonic() - last_log > _WAIT_LOG_S:
        logging.info("Waiting for the collectors: the replay holds %d of the %d items training "
                     "starts from.", size, need)
        last_log = time.monotonic()
      self._beat(train_step=self._job.train_step, waiting="replay")
      time.sleep(0.5)

  def train(self, until_step: int) -> None:
    job, s = self._job, self._settings
    step = job.train_step
    while step < until_step and not self._stop.requested:
      if self._iterator is None:
        self._iterator = job.replay.iterator(job.replica_batch_size, job.strategy)
      iterations = schedule.steps_until_next_event(s, step, until_step)
      try:
        self._learn(step, iterations)
      except (tf.errors.OutOfRangeError, tf.errors.DeadlineExceededError):
        # The dataset waited SAMPLE_TIMEOUT_MS for the rate limiter: no collector
        # wrote meanwhile. A new iterator; the stop request is checked first.
        logging.warning("No new replay items for %d s: waiting for the collectors.",
                        SAMPLE_TIMEOUT_MS // 1000)
        self._iterator = None
      except (*connection.ERRORS, RunDirError) as e:
        self._reconnect(e)
      self._push()
      self._beat(train_step=job.train_step, env_steps=job.run_state.env_steps)
      step = job.train_step

  def _reconnect(self, error: BaseException, stopping: bool = False) -> None:
    """After an error: re-raises it unless the server is gone; then waits for
    the server, reconnects, and takes a checkpoint the gone server missed.
    `stopping`: the wait is for the stop's own checkpoint (a second signal
    still ends the process at once)."""
    job = self._job
    restarted = rolefiles.server_incarnation(job.root_dir) != self._incarnation
    if not restarted and _replay_reset(error):
      restarted = self._await_server_restart()
    if connection.reachable(job.replay.address) and not restarted:
      raise error
    logging.warning("The replay server at %s stopped answering (%s); the learner waits for it.",
                    job.replay.address, connection.describe(error))
    address = self.link.wait(lambda: self._stop.requested and not stopping, "restarting?")
    if address is None:
      return
    self._incarnation = rolefiles.server_incarnation(job.root_dir)
    self._counters.forget()  # the restarted server's counters are its checkpoint's
    job.replay.connect(address)
    self._iterator = None
    self._push()
    # What the error cut short at this step: its export (before any bundle past
    # it: the export invariant), then its checkpoint.
    job.export_if_missing()
    if job.train_step % self._settings.checkpoint_interval == 0:
      job.checkpoint()  # a no-op if that bundle was committed before the error

  def _await_server_restart(self) -> bool:
    """After a client emptied the replay: the server restarts from the newest
    bundle (`replay_server._Guard`); whether it did within `_RESTART_WAIT_S`."""
    logging.error("The replay was emptied by a client's reset(); its checkpoint is not "
                  "committed. Waiting for the replay server to restart from the newest bundle.")
    deadline = time.monotonic() + _RESTART_WAIT_S
    while time.monotonic() < deadline:
      if rolefiles.server_incarnation(self._job.root_dir) != self._incarnation:
        return True
      time.sleep(0.5)
    return False

  def _beat(self, force: bool = False, **figures) -> None:
    """The heartbeat names the session whose weights the collectors trust (`weights`)."""
    self._heartbeat.beat(force=force, session=self._session, **figures)

  def _push(self) -> None:
    """The policy weights and train step, signed, for the collectors."""
    try:
      self._pusher.push(self._job.replay.client)
    except connection.ERRORS as e:
      if connection.reachable(self._job.replay.address):
        raise
      logging.warning("Could not push the policy weights (%s); the next call retries.",
                      connection.describe(e))

  def on_finished(self) -> None:
    self._beat(force=True, train_step=self._job.train_step, complete=True, stopped=True)

  def checkpoint_at_stop(self) -> None:
    try:
      self._job.checkpoint()
    except (*connection.ERRORS, RunDirError) as e:  # the server is restarting: wait for it
      self._reconnect(e, stopping=True)
    self._job.checkpoint()  # a no-op once committed

  def on_stopped(self) -> None:
    self._beat(force=True, train_step=self._job.train_step, stopped=True)


@dataclasses.dataclass(frozen=True)
class LearnerLoopFactory:
  """`train.loop` of the learner role: builds `LearnerLoop(job, stop)` on the
  server link, and checks the config against the server before the run
  directory is touched."""

  link: connection.ServerLink
  counters: ServerCounters

  def __call__(self, job: JobView, stop: StopRequest) -> LearnerLoop:
    return LearnerLoop(job, stop, link=self.link, counters=self.counters)

  def check_config(self, settings, agent, replay_fn, strategy) -> None:
    del settings, replay_fn, strategy
    if isinstance(agent, ppo_agent.PPOAgent):
      raise ConfigError("PPO trains on the batch it just collected and runs in one process: "
                        "run it with python -m trainer.train, not as roles")
    _check_network(self.link.address, agent)


def _replay_reset(error: BaseException | None) -> bool:
  while error is not None:
    if isinstance(error, ReplayResetError):
      return True
    error = error.__cause__
  return False


def _check_network(address: str, agent) -> None:
  """A server whose tables were built for another network is refused before
  the run directory is touched; one that does not answer is waited for later."""
  try:
    info = reverb.Client(address).server_info(_INFO_TIMEOUT_S)
  except connection.ERRORS:
    return
  weights.check(info, tf.nest.flatten(agent.collect_policy.variables()), "the learner")


def learn(root_dir: str, run_config, stop: StopRequest, address: str | None) -> int:
  """Runs (or resumes) the job's learner against the replay server."""
  link = connection.ServerLink(root_dir, address, "Learner")
  if link.wait(lambda: stop.requested) is None:
    return job_lib.EXIT_PREEMPTED

  spec = job_lib.configure_job(root_dir, run_config)  # the configured replay's table

  def replay_server(data_spec, *, sequence_length, root_dir, restore_dir, num_envs):
    replay = tables.replay_layout(spec.replay_fn, spec.settings, data_spec, sequence_length)
    return ReverbReplay(
        replay, scratch_dir=os.path.join(root_dir, layout.REVERB_SCRATCH_DIR),
        address=link.address, restore_dir=restore_dir, num_envs=num_envs, run_dir=root_dir,
        sample_timeout_ms=SAMPLE_TIMEOUT_MS)

  counters = ServerCounters(root_dir)
  # The server's checkpoint of a large table takes seconds: training goes on
  # while it is written (docs/benchmarks.md, "replay checkpoint stall").
  return job_lib.train(root_dir, run_config, stop=stop, replay_fn=replay_server,
                       loop=LearnerLoopFactory(link, counters), refresh_counters=counters.refresh,
                       background_checkpoints=True)
