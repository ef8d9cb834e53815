"""What `trainer.launch` does when a role ends: restart, back off, give up, stop.

- A role that dies is restarted after `backoff` (1 s, doubling to 30 s); the
  `MAX_FAILURES`th failure within `FAILURE_WINDOW_S` is not restarted:
  everything stops, exit 1.
- A role that refuses its config (exit 2) or the run directory (exit 3) would
  refuse it again: everything stops, with that code.
- A stop request: the learner is stopped first (it commits a bundle while the
  server and the collectors still run, and a server that dies meanwhile is
  restarted); a learner still running `STOP_GRACE_S` later is killed: exit 1
  (its last committed bundle stays valid). Then the collectors, then (once
  they are gone, or `SERVER_AFTER_S` later) the server, each SIGKILLed if it
  outlives `OTHERS_GRACE_S`.
- The learner at its total (exit 0): the others are stopped, exit 0.

Pure logic on injected parts: a `Clock` and a `start` function that makes a
`Process` of a role, so tests run it on fakes; trainer/roles/launch.py gives it
real processes and time. No TensorFlow here.
"""

import dataclasses
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from trainer.errors import EXIT_CRASH, EXIT_OK, EXIT_PREEMPTED, EXIT_RUN_DIR, EXIT_USAGE

MAX_FAILURES = 5  # within FAILURE_WINDOW_S: the role is not restarted again
FAILURE_WINDOW_S = 120.0
BACKOFF_S = (1.0, 30.0)  # first delay, most
STOP_GRACE_S = 900.0  # how long the learner may take to commit its bundle when stopped
OTHERS_GRACE_S = 10.0  # then the others: SIGTERM, and SIGKILL after this
SERVER_AFTER_S = 3.0  # the server is stopped this long after the collectors, at most
POLL_S = 0.2


class Process(Protocol):
  """A started role (`subprocess.Popen` is one)."""

  def poll(self) -> int | None: ...

  def send_signal(self, signum: int) -> None: ...

  def wait(self) -> int: ...


class Clock(Protocol):
  def monotonic(self) -> float: ...

  def sleep(self, seconds: float) -> None: ...


@dataclasses.dataclass(frozen=True)
class RoleSpec:
  """One role: its command, its log, and whether all its lines are printed."""

  name: str
  argv: tuple[str, ...]
  log_path: str
  echo_all: bool = False


def backoff(failures: int) -> float:
  """Seconds before restarting a role that has failed `failures` times recently."""
  first, most = BACKOFF_S
  return min(most, first * 2 ** max(0, failures - 1))


def describe_exit(code: int) -> str:
  if code < 0:
    return f"killed by {signal.Signals(-code).name}"
  return f"exited with code {code}"


@dataclasses.dataclass
class _Slot:
  """A role's current process and its recent failures."""

  spec: RoleSpec
  process: Process | None = None
  failures: list[float] = dataclasses.field(default_factory=list)
  restart_at: float | None = None
  starts: int = 0

  def signal(self, signum: int) -> None:
    if self.process is not None and self.process.poll() is None:
      try:
        self.process.send_signal(signum)
      except ProcessLookupError:
        pass

  def running(self) -> bool:
    return self.process is not None and self.process.poll() is None


class Supervisor:
  """Runs `roles` (the server first, then `learner`, then the collectors) to
  the job's end; `run()` returns launch's exit code (see the module doc)."""

  def __init__(self, roles: Sequence[RoleSpec], *, learner: str,
               start: Callable[[RoleSpec], Process], clock: Clock,
               say: Callable[[str], None], stop_requested: Callable[[], bool],
               on_tick: Callable[[], None] = lambda: None):
    self._slots = [_Slot(spec) for spec in roles]
    self._learner = next(s for s in self._slots if s.spec.name == learner)
    self._start, self._clock, self._say = start, clock, say
    self._stop_requested, self._on_tick = stop_requested, on_tick

  def run(self) -> int:
    for slot in self._slots:
      self._launch(slot)
    try:
      return self._supervise()
    finally:
      self._stop_all()

  def kill_all(self) -> None:
    """SIGKILL to every role still running (a second stop signal)."""
    for slot in self._slots:
      slot.signal(signal.SIGKILL)

  def _launch(self, slot: _Slot) -> None:
    slot.process = self._start(slot.spec)
    slot.starts += 1
    slot.restart_at = None

  def _supervise(self) -> int:
    stop_at = None
    while True:
      now = self._clock.monotonic()
      if stop_at is None and self._stop_requested():
        # The learner first: it commits a bundle, for which the server must still serve
        # (and is still restarted if it dies meanwhile).
        stop_at = now
        self._learner.signal(signal.SIGTERM)
        self._learner.restart_at = None
      if stop_at is not None and now - stop_at >= STOP_GRACE_S and self._learner.running():
        return self._learner_overdue()
      self._on_tick()
      for slot in self._slots:
        code = self._check(slot, now, stopping=stop_at is not None)
        if code is not None:
          return code
      self._clock.sleep(POLL_S)

  def _check(self, slot: _Slot, now: float, *, stopping: bool) -> int | None:
    """Restarts `slot` when due; returns launch's exit code if its end ends the job."""
    if slot.restart_at is not None:
      if now >= slot.restart_at:
        self._say(f"Restarting {slot.spec.name} (start {slot.starts + 1}).")
        self._launch(slot)
      return None
    code = slot.process.poll()
    if code is None:
      return None
    if slot is self._learner and (code == EXIT_OK or stopping):
      return self._learner_done(code)
    if code in (EXIT_USAGE, EXIT_RUN_DIR):
      self._say(f"{slot.spec.name} {describe_exit(code)}: it would refuse again (its error is "
                f"above and in {slot.spec.log_path}); stopping every role.")
      return code
    slot.failures = [t for t in slot.failures if now - t < FAILURE_WINDOW_S] + [now]
    if len(slot.failures) >= MAX_FAILURES:
      self._say(f"{slot.spec.name} {describe_exit(code)}, its {len(slot.failures)}th failure "
                f"within {FAILURE_WINDOW_S:.0f} s: not restarting it (see "
                f"{slot.spec.log_path}); stopping every role.")
      return EXIT_CRASH
    delay = backoff(len(slot.failures))
    self._say(f"{slot.spec.name} {describe_exit(code)}; restarting it in {delay:.0f} s "
              f"(see {slot.spec.log_path}).")
    slot.restart_at = now + delay
    return None

  def _learner_done(self, code: int) -> int:
    if code == EXIT_OK:
      self._say("The learner reached its total: stopping the other roles.")
      return EXIT_OK
    if code == EXIT_PREEMPTED:
      self._say("The learner committed a checkpoint and stopped: stopping the other roles.")
      return EXIT_PREEMPTED
    self._say(f"The learner {describe_exit(code)} while stopping (see "
              f"{self._learner.spec.log_path}); the last committed checkpoint stays valid.")
    return EXIT_CRASH

  def _learner_overdue(self) -> int:
    self._learner.signal(signal.SIGKILL)
    self._say(f"The learner did not stop within {STOP_GRACE_S:.0f} s of the stop request: "
              f"killed it (see {self._learner.spec.log_path}); the last committed checkpoint "
              "stays valid, and a rerun resumes from it.")
    return EXIT_CRASH

  def _stop_all(self) -> None:
    """Stops every role still running: the learner and the collectors first,
    so that a stopping collector still flushes and counts its chunk and writes
    its final heartbeat; the server `SERVER_AFTER_S` later, or once they are
    gone: a collector that the rate limiter holds in a write (the learner
    gone) is freed by the server's going, and only then runs its signal
    handler. A role that outlives `OTHERS_GRACE_S` is killed, and launch says so."""
    server = self._slots[0]
    first = [s for s in self._slots if s is not server]
    for slot in first:
      slot.signal(signal.SIGTERM)
    start = self._clock.monotonic()
    while (any(s.running() for s in first)
           and self._clock.monotonic() - start < SERVER_AFTER_S):
      self._clock.sleep(0.1)
    server.signal(signal.SIGTERM)
    for slot in [*first, server]:
      while slot.running() and self._clock.monotonic() - start < OTHERS_GRACE_S:
        self._clock.sleep(0.1)
      if slot.running():
        self._say(f"{slot.spec.name} did not stop within {OTHERS_GRACE_S:.0f} s: killing it "
                  f"(see {slot.spec.log_path}).")
        slot.signal(signal.SIGKILL)
      if slot.process is not None:
        slot.process.wait()
