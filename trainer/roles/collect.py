"""The collector role: steps `train.collect_envs` environments with the newest
policy the learner pushed, and writes what it collects to the replay server.

- Policy: a random one until the replay holds `train.initial_collect_steps`
  items (the single-process job's initial collect), then the agent's collect
  policy, its weights pulled from the server before every chunk of
  `train.collect_steps_per_iteration` env steps, used only if they carry the
  job's signature (`weights`).
- Counters: collector I's env steps and episodes are those that reached the
  replay: after each chunk is flushed to the server, the totals are written
  into the server's `counters_<I>` table. A restarted collector (or one whose
  server was restored from a bundle) continues from what the server holds, so
  the counts never restart nor count a step twice. A collector killed between
  a chunk's flush and its counter write leaves that chunk's items in the replay
  uncounted (at most one chunk per kill).
- The rate limiter (`tables.rate_control`) blocks a collector that runs too far
  ahead of the learner: the collect:train ratio is the config's.
- A replay server that stops answering is waited for (the log says so), then
  the collector reconnects and continues from the counters the server holds.
"""

import os
import select
import signal
import socket
import threading
import time

import reverb
import tensorflow as tf
from absl import logging
from tf_agents.policies import random_py_policy

from trainer.acting import envs
from trainer.acting.collect_stats import CollectStats
from trainer.acting.collector import Collector
from trainer.errors import EXIT_CRASH, EXIT_OK, EXIT_PREEMPTED, ConfigError
from trainer.loops import job as job_lib
from trainer.loops import parts
from trainer.replay.layout import replay_size
from trainer.roles import auth, connection, rolefiles, tables, weights
from trainer.rundir import layout
from trainer.rundir.signals import StopRequest

# Errors of a server that stopped answering, from Reverb's Python client and its TF ops.
_GONE = (*connection.ERRORS, tf.errors.DeadlineExceededError)


_FLUSH_TIMEOUT_MS = 30_000  # longer than the rate limiter holds a write while the learner works
_MAX_RECONNECTS = 5  # in a row without a chunk counted: the error is not the server's going
_STUCK_S = 30.0
_STOP_GRACE_S = 5.0  # a stopped collector that does not finish its chunk by then exits anyway
_INFO_TIMEOUT_S = 30  # a server that does not answer server_info in this long is gone


class _Watchdog:
  """Ends a collector stuck in a Reverb call that will never return (a writer's
  episode end waits without a timeout, and a rate-limited write waits for a
  learner that is gone):

  - stopped (SIGTERM) and no chunk for `_STOP_GRACE_S`: it exits 75 (its
    counters are on the server; the unfinished chunk is not counted);
  - after `_STUCK_S` without a chunk, if the server is another process than the
    one connected to (it restarted): it exits 1 with a line saying why, and its
    supervisor restarts it. A rate-limited wait on a live server is left alone.
  """

  def __init__(self, root_dir: str, task: int, stop: StopRequest, on_exit):
    """`on_exit()`: called before the process exits (the final heartbeat).
    Call it in the main thread: a blocked Reverb call holds the main thread, so
    Python's own signal handler (`stop`) does not run until it returns; the C
    handler still writes the signal to the wakeup fd that this thread reads."""
    self._root, self._task, self._stop, self._on_exit = root_dir, task, stop, on_exit
    self._stopped_at = None
    self._incarnation = None
    self._progress = None
    self._thread = None
    self._signalled = False
    self._wakeup, writer = socket.socketpair()
    for end in (self._wakeup, writer):
      end.setblocking(False)
    self._writer = writer  # kept open for the process's life
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

  def _wait(self, seconds: float) -> None:
    """Sleeps, and notes a SIGTERM/SIGINT delivered meanwhile."""
    if select.select([self._wakeup], [], [], seconds)[0]:
      try:
        received = self._wakeup.recv(64)
      except BlockingIOError:
        return
      self._signalled |= any(n in (signal.SIGTERM, signal.SIGINT) for n in received)

  def start(self, incarnation, progress) -> None:
    self._incarnation, self._progress = incarnation, progress
    if self._thread is None:
      self._thread = threading.Thread(target=self._watch, daemon=True)
      self._thread.start()

  def _watch(self) -> None:
    last, since = self._progress(), time.monotonic()
    while True:
      self._wait(1.0)
      now, count = time.monotonic(), self._progress()
      if self._stop.requested or self._signalled:
        self._stopped_at = self._stopped_at or now
        if now - max(self._stopped_at, since) > _STOP_GRACE_S:
          logging.warning("Collector %d: stopped, and its write to the replay server does not "
                          "return; exiting without it (its counters are on the server).",
                          self._task)
          self._exit(EXIT_PREEMPTED)
      if count != last:
        last, since = count, now
        continue
      current = rolefiles.server_incarnation(self._root)
      if now - since > _STUCK_S and current is not None and current != self._incarnation:
        logging.error("Collector %d is stuck in a write to a replay server that has since "
                      "restarted; exiting so that it is restarted (its counters are on the "
                      "server).", self._task)
        self._exit(EXIT_CRASH)

  def _exit(self, code: int) -> None:
    self._on_exit()
    logging.flush()
    os._exit(code)


class CollectorRole:
  """One collector task, from its config to its stop."""

  def __init__(self, root_dir: str, run_config, task: int, address: str | None,
               stop: StopRequest):
    if not 0 <= task < tables.MAX_COLLECTORS:
      raise ConfigError(f"--task={task} is out of range: collectors are numbered 0 to "
                        f"{tables.MAX_COLLECTORS - 1}")
    self._root, self._task, self._stop = root_dir, task, stop
    spec = job_lib.configure_job(root_dir, run_config)
    self._settings = s = spec.settings
    self._config_changes = run_config.refused  # against the run's saved config, if any
    self._envs = [spec.environment_fn() for _ in range(s.collect_envs)]
    env = self._envs[0]
    self._agent, self._train_step = parts.create_agent(spec, env)
    self._key = auth.job_key(root_dir)
    self._rejections = auth.Rejections(f"Collector {task}")
    self._weights = weights.Puller(self._key, root_dir,
                                   tf.nest.flatten(self._agent.collect_policy.variables()),
                                   self._train_step, self._rejections)
    self._random = random_py_policy.RandomPyPolicy(
        env.time_step_spec(), env.action_spec(), outer_dims=(len(self._envs),))
    self._layout = tables.replay_layout(spec.replay_fn, s, self._agent.collect_data_spec,
                                        self._agent.train_sequence_length)
    self._name = rolefiles.collector(task)
    self._link = connection.ServerLink(root_dir, address, f"Collector {task}")
    self._heartbeat = rolefiles.Heartbeat(root_dir, self._name)
    self._stats = CollectStats(len(self._envs))
    self._collector = None
    self._policy = None
    self._client = self._writers = None
    self._incarnation = None  # the server process whose counters this collector continues
    self._chunks = 0  # chunks counted since the process started
    self._job_complete = False
    self._started = time.time()
    self._checked_learner = 0.0

  def run(self) -> int:
    reason, failures = None, 0
    watchdog = _Watchdog(self._root, self._task, self._stop, self._final_beat)
    while not self._stop.requested and not self._job_complete:
      if self._link.wait(lambda: self._stop.requested, reason) is None:
        break
      chunks = self._chunks
      try:
        self._connect()
        watchdog.start(rolefiles.server_incarnation(self._root), lambda: self._chunks)
        self._collect_until_stopped()
      except _GONE as e:
        if self._stop.requested:
          break
        failures = 1 if self._chunks > chunks else failures + 1
        if failures > _MAX_RECONNECTS:
          raise
        logging.warning("Collector %d lost the replay server (%s); reconnecting.", self._task,
                        connection.describe(e))
        reason = "restarting?"
    self._final_beat()
    if self._job_complete:
      logging.info("Collector %d: the learner reached its total; stopping at %d env steps (%d "
                   "episodes) in the replay.", self._task, self._stats.env_steps,
                   self._stats.episodes)
      return EXIT_OK
    logging.warning("Collector %d stopped at %d env steps (%d episodes) in the replay.",
                    self._task, self._stats.env_steps, self._stats.episodes)
    return EXIT_PREEMPTED

  def _final_beat(self) -> None:
    self._heartbeat.beat(force=True, env_steps=self._stats.env_steps,
                         episodes=self._stats.episodes, stopped=True)

  def _connect(self) -> None:
    """Connects to the server; the counters continue from what it holds."""
    address = self._link.address
    self._client = reverb.Client(address)
    weights.check(self._client.server_info(_INFO_TIMEOUT_S), self._weights.variables,
                  f"collector {self._task}", self._config_changes)
    self._incarnation = rolefiles.server_incarnation(self._root)
    counters = self._held_counters()
    if counters is None:  # forged: this collector's own last heartbeat says what it had
      beat = rolefiles.read(self._root, self._name) or {}
      counters = (int(beat.get("env_steps", 0)), int(beat.get("episodes", 0)))
    self._stats.env_steps, self._stats.episodes = counters
    # A new seed for each (task, count): a restart does not replay its predecessor's episodes.
    for i, env in enumerate(self._envs):
      envs.seed_environment(env, envs.derived_seed(self._settings.seed, 1 + self._task, i,
                                                   counters[0]))
    served = self._layout.served(self._client.server_info(_INFO_TIMEOUT_S))
    self._writers = served.writers(self._client, len(self._envs))
    self._collector = Collector(
        self._envs, self._train_step, observers=[self._writers], metrics=self._stats,
        summary_dir=os.path.join(self._root, layout.TRAIN_DIR, self._name),
        summary_interval=self._settings.summary_interval)
    self._policy = None
    self._heartbeat.beat(force=True, env_steps=counters[0], episodes=counters[1])
    logging.info("Collector %d connected to the replay server at %s (env steps %d, episodes "
                 "%d so far).", self._task, address, *counters)

  def _collect_until_stopped(self) -> None:
    s = self._settings
    while not self._stop.requested and not self._learner_complete():
      self._choose_policy()
      before = (self._stats.env_steps, self._stats.episodes)
      self._collector.run(s.collect_steps_per_iteration)
      # The chunk is in the replay, then it is counted. A server that went away
      # never confirms: the timeout ends the wait, and the collector reconnects.
      self._writers.flush(timeout_ms=_FLUSH_TIMEOUT_MS)
      self._count(before)
      self._chunks += 1

  def _learner_complete(self) -> bool:
    """Whether the learner wrote that it reached the job's total (checked every
    few seconds): on a cluster nobody else stops the collectors then."""
    now = time.monotonic()
    if now - self._checked_learner > rolefiles.HEARTBEAT_S:
      self._checked_learner = now
      # Written since this collector started: not a finished run's, resumed for more steps.
      learner = rolefiles.read(self._root, rolefiles.LEARNER) or {}
      self._job_complete = bool(learner.get("complete")) and learner["time"] > self._started
    return self._job_complete

  def _held_counters(self) -> tuple[int, int] | None:
    """This collector's counters on the server ((0, 0) if none), or None if the
    record there does not verify (another client wrote it)."""
    counters = tables.read_counters(self._client, self._key, timeout=10, tasks=[self._task])
    if self._task in counters.forged:
      self._rejections.reject("counters", "its counters on the replay server do not carry the "
                              "job's signature")
      return None
    return counters.signed.get(self._task, (0, 0))

  def _count(self, before: tuple[int, int]) -> None:
    """Adds the chunk just flushed to the server's counters. A server restarted
    meanwhile (gRPC reconnects by itself) holds the counters of the bundle it
    restored, not `before`: the count goes on from those, as its replay does.
    The same server holding other counters than `before` had them written by
    another client: they are ignored."""
    held = self._held_counters()
    incarnation = rolefiles.server_incarnation(self._root)
    if held is not None and held != before:
      if incarnation != self._incarnation:
        logging.warning("Collector %d: the replay server holds %d env steps (%d episodes) of "
                        "this collector, not %d: it restarted from a checkpoint; counting on "
                        "from it.", self._task, held[0], held[1], before[0])
      else:
        self._rejections.reject("replayed", f"the replay server holds {held[0]} env steps of "
                                f"this collector, not its {before[0]}, though it did not restart")
        held = None
    self._incarnation = incarnation
    held = before if held is None else held
    self._stats.env_steps = held[0] + self._stats.env_steps - before[0]
    self._stats.episodes = held[1] + self._stats.episodes - before[1]
    tables.write_counters(self._client, self._key, self._task, self._stats.env_steps,
                          self._stats.episodes)
    self._heartbeat.beat(force=held != before, env_steps=self._stats.env_steps,
                         episodes=self._stats.episodes, policy_step=int(self._train_step.numpy()))

  def _choose_policy(self) -> None:
    """Random until the replay holds the initial collect; then the newest weights."""
    info = self._client.server_info(_INFO_TIMEOUT_S)
    if replay_size(info, self._layout.name) < self._settings.initial_collect_steps:
      if self._policy is not self._random:
        self._collector.use(self._random)
        self._policy = self._random
      return
    self._weights.pull(self._client, _INFO_TIMEOUT_S)
    if not self._weights.has_weights:
      if self._policy is None:  # nothing verified pushed yet: keep exploring at random
        self._collector.use(self._random)
        self._policy = self._random
      return
    if self._policy is not self._agent.collect_policy:
      self._collector.use(self._agent.collect_policy)
      self._policy = self._agent.collect_policy
      logging.info("Collector %d: collecting with the learner's policy of train step %d.",
                   self._task, int(self._train_step.numpy()))
