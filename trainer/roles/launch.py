r"""Runs every role of a job on this machine and supervises them.

  python -m trainer.launch --root_dir=DIR --gin_file=configs/X.gin [--gin_bindings=...] \
      [--collectors=N] [--allow_config_change]

Starts a replay server on a free loopback port, the learner and N collectors
(each a process of its own, the commands of trainer/cli/roles.py), and:

- restarts a role that dies, after a back-off (1 s, doubling to 30 s), with a
  line saying which and how it ended; a role that fails `MAX_FAILURES` times
  within `FAILURE_WINDOW_S` is not restarted again: everything stops, exit 1;
- a role that refuses its config (exit 2) or the run directory (exit 3) would
  refuse it again: everything stops and launch exits with that code;
- SIGTERM or Ctrl-C: the learner is stopped first (it commits a bundle while
  the server and the collectors still run), then the others; exit 75;
- when the learner reaches `train.num_iterations` (exit 0), the others are
  stopped and launch exits 0.

Each role's output goes to `DIR/roles/logs/<role>.log`; the learner's lines,
and the others' warnings and errors, are also printed here, prefixed with the
role. This process never loads TensorFlow.
"""

import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from trainer.errors import EXIT_CRASH, EXIT_OK, EXIT_PREEMPTED, EXIT_RUN_DIR, EXIT_USAGE
from trainer.roles import rolefiles
from trainer.rundir import layout

MAX_FAILURES = 5
FAILURE_WINDOW_S = 120.0
BACKOFF_S = (1.0, 30.0)  # first delay, most
STOP_GRACE_S = 900.0  # how long the learner may take to commit its bundle when stopped
OTHERS_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def backoff(failures: int) -> float:
  """Seconds before restarting a role that has failed `failures` times recently."""
  first, most = BACKOFF_S
  return min(most, first * 2 ** max(0, failures - 1))


def _die_with_parent() -> None:
  """In the child: a SIGTERM when launch dies (SIGKILL included), so no role
  outlives it; the learner then commits a bundle and exits 75."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
  except OSError:
    pass


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def describe_exit(code: int) -> str:
  if code < 0:
    return f"killed by {signal.Signals(-code).name}"
  return f"exited with code {code}"


@dataclasses.dataclass
class Role:
  """One role's process, restarted as needed."""

  name: str
  argv: list[str]
  log_path: str
  echo_all: bool  # print every line (the learner's) or only warnings and errors
  process: subprocess.Popen | None = None
  failures: list[float] = dataclasses.field(default_factory=list)
  restart_at: float | None = None
  starts: int = 0
  stopping: bool = False  # stopped by launch: its last lines go to its log alone

  def start(self) -> None:
    log = open(self.log_path, "a", buffering=1)  # noqa: SIM115  (closed by the pump)
    self.process = subprocess.Popen(
        self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True, preexec_fn=_die_with_parent)
    self.starts += 1
    self.restart_at = None
    threading.Thread(target=self._pump, args=(self.process, log), daemon=True).start()

  def _pump(self, process: subprocess.Popen, log) -> None:
    with log:
      for line in process.stdout:
        log.write(line)
        if self.echo_all or (not self.stopping
                             and (line[:1] in ("W", "E", "F") or "error:" in line)):
          sys.stderr.write(f"[{self.name}] {line}")

  def signal(self, signum: int) -> None:
    if self.process is not None and self.process.poll() is None:
      try:
        self.process.send_signal(signum)
      except ProcessLookupError:
        pass

  def running(self) -> bool:
    return self.process is not None and self.process.poll() is None


class Launch:
  """The supervisor; `run()` returns launch's exit code."""

  def __init__(self, root_dir: str, config_args: list[str], collectors: int,
               allow_config_change: bool = False):
    self._root = root_dir
    port = free_port()
    address = f"localhost:{port}"
    python = [sys.executable, "-m"]
    common = [f"--root_dir={root_dir}", *config_args]
    logs = os.path.join(root_dir, layout.ROLE_LOGS_DIR)
    os.makedirs(logs, exist_ok=True)

    def role(name, module, *extra, echo_all=False):
      return Role(name, [*python, module, *common, *extra], os.path.join(logs, f"{name}.log"),
                  echo_all)

    self.server = role(rolefiles.SERVER, "trainer.replay_server", f"--port={port}",
                       "--host=localhost")
    self.learner = role(rolefiles.LEARNER, "trainer.learn", f"--replay_address={address}",
                        *(["--allow_config_change"] if allow_config_change else []),
                        echo_all=True)
    self.collectors = [role(rolefiles.collector(i), "trainer.collect", f"--task={i}",
                            f"--replay_address={address}") for i in range(collectors)]
    self.roles = [self.server, self.learner, *self.collectors]
    self._signals = 0
    self._address = address

  def _on_signal(self, signum, frame) -> None:
    del frame
    self._signals += 1
    if self._signals == 1:
      _say(f"Received {signal.Signals(signum).name}: stopping the learner (it commits a "
           "checkpoint), then the other roles (send it again to stop them all at once).")
      return
    _say("Second signal: killing every role now; the last committed checkpoint stays valid.")
    for role in self.roles:
      role.signal(signal.SIGKILL)
    os._exit(128 + signum)

  def run(self) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):
      signal.signal(signum, self._on_signal)
    _say(f"Launching {self._root}: a replay server at {self._address}, the learner and "
         f"{len(self.collectors)} collector(s); logs in "
         f"{os.path.join(self._root, layout.ROLE_LOGS_DIR)}.")
    for role in self.roles:
      role.start()
    try:
      return self._supervise()
    finally:
      self._stop_all()

  def _supervise(self) -> int:
    stopping = False
    while True:
      if self._signals and not stopping:
        # The learner first: it commits a bundle, for which the server must still serve
        # (and is still restarted if it dies meanwhile).
        stopping = True
        self.learner.signal(signal.SIGTERM)
        self.learner.restart_at = None
      now = time.monotonic()
      for role in self.roles:
        if role.restart_at is not None:
          if now >= role.restart_at:
            _say(f"Restarting {role.name} (start {role.starts + 1}).")
            role.start()
          continue
        code = role.process.poll()
        if code is None:
          continue
        if role is self.learner and (code == EXIT_OK or stopping):
          return self._learner_done(code, stopping)
        if code in (EXIT_USAGE, EXIT_RUN_DIR):
          _say(f"{role.name} {describe_exit(code)}: it would refuse again (its error is above "
               f"and in {role.log_path}); stopping every role.")
          return code
        role.failures = [t for t in role.failures if now - t < FAILURE_WINDOW_S] + [now]
        if len(role.failures) > MAX_FAILURES:
          _say(f"{role.name} {describe_exit(code)}, its {len(role.failures)}th failure within "
               f"{FAILURE_WINDOW_S:.0f} s: not restarting it (see {role.log_path}); stopping "
               "every role.")
          return EXIT_CRASH
        delay = backoff(len(role.failures))
        _say(f"{role.name} {describe_exit(code)}; restarting it in {delay:.0f} s "
             f"(see {role.log_path}).")
        role.restart_at = now + delay
      time.sleep(0.2)

  def _learner_done(self, code: int, stopping: bool) -> int:
    if code == EXIT_OK:
      _say("The learner reached its total: stopping the other roles.")
      return EXIT_OK
    if code == EXIT_PREEMPTED:
      _say("The learner committed a checkpoint and stopped: stopping the other roles.")
      return EXIT_PREEMPTED
    _say(f"The learner {describe_exit(code)} while stopping (see {self.learner.log_path}); "
         "the last committed checkpoint stays valid.")
    return EXIT_CRASH

  def _stop_all(self) -> None:
    """Stops every role still running, the server with the others: a collector
    that the rate limiter holds in a write (the learner gone) is freed by the
    server's going and then sees its stop request."""
    order = [self.learner, *self.collectors, self.server]
    for role in order:
      role.stopping = role is not self.learner
      role.signal(signal.SIGTERM)
    deadline = time.monotonic() + OTHERS_GRACE_S
    for role in order:
      while role.running() and time.monotonic() < deadline:
        time.sleep(0.1)
      role.signal(signal.SIGKILL)
      if role.process is not None:
        role.process.wait()


def _say(message: str) -> None:
  stamp = time.strftime("%m%d %H:%M:%S")
  sys.stderr.write(f"I{stamp} launch] {message}\n")
  sys.stderr.flush()
