"""Runs a sweep's members on this machine, N at a time (no TensorFlow in this process).

Each member is `python -m trainer.train` on its own run directory, so it is as
preemption-safe as any job: the runner only starts, watches and stops them.

- A member whose newest committed bundle says its total is reached is complete
  and skipped; any other is started and resumes from its own bundles.
- Each member's TensorFlow gets `threads` intra- and inter-op threads (the
  machine's cores over N by default), so N members do not oversubscribe it.
- SIGTERM or Ctrl-C: every running member gets SIGTERM, commits and exits 75;
  the runner waits for them and exits 75. A second signal is passed on too
  (the members exit at once, their last committed bundles valid).
- The runner killed (SIGKILL): its running members get SIGTERM from the kernel
  (`_stop_with_parent`) and commit and stop as above; the rerun resumes them.
- A member that exits otherwise (a crash, a config its grid value breaks) is
  failed: reported with its log, and the others go on. A member stopped by a
  signal the runner did not send (75) is started again, up to `RETRIES` times.
"""

import dataclasses
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from absl import logging

from trainer import errors
from trainer.checkpoint.bundle_store import BundleStore
from trainer.rundir import fileio, layout, run_lock
from trainer.storage import urls
from trainer.storage.remote import RemoteRun
from trainer.sweeps import definition as definition_lib

POLL_S = 0.2
RETRIES = 3  # restarts of a member stopped by someone else's signal


def member_progress(member_dir: str) -> tuple[int, int | None]:
  """(train step, total) of the member's newest committed bundle ((0, None): none).
  The files are not verified (trainer.train does that when it resumes)."""
  if urls.is_remote(member_dir):
    return RemoteRun(member_dir).progress()
  if not os.path.isdir(member_dir):
    return 0, None
  for bundle in reversed(BundleStore(member_dir).committed()):
    if bundle.problem is None:
      return bundle.summary.get("train_step", 0), bundle.summary.get("num_iterations")
  return 0, None


def is_complete(member_dir: str) -> bool:
  step, total = member_progress(member_dir)
  return bool(total) and step >= total


@dataclasses.dataclass
class _Running:
  member: definition_lib.Member
  proc: subprocess.Popen
  log: object
  started: float
  stops: int = 0


class LocalRunner:
  """Runs `definition`'s members under `root_dir`, `parallel` at a time."""

  def __init__(self, definition: definition_lib.Definition, root_dir: str, *, parallel: int,
               threads: int | None = None, python: str = sys.executable,
               members_root: str | None = None, publish: Callable[[], None] = lambda: None):
    """`members_root`: where the members' run directories are, when not under `root_dir`
    (a sweep on gs://: the sweep's files staged in `root_dir`, its members in the bucket);
    `publish`: called once the sweep's files changed (an outcome recorded)."""
    self._definition = definition
    self._root = root_dir
    self._members = members_root or root_dir
    self._publish = publish
    self._parallel = parallel
    self._threads = threads or max(1, (os.cpu_count() or 1) // parallel)
    self._python = python
    self._outcomes_path = os.path.join(root_dir, definition_lib.OUTCOMES_FILE)
    self._outcomes = self._read_outcomes()
    self._signals = 0
    self._signal_to_pass = signal.SIGTERM
    self._waiting: set[str] = set()  # members seen held by another process

  # --- signals ------------------------------------------------------------------

  def install(self) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
      signal.signal(signum, self._on_signal)

  def _on_signal(self, signum, frame) -> None:
    del frame
    self._signals += 1
    self._signal_to_pass = signum

  # --- the loop -----------------------------------------------------------------

  def run(self) -> int:
    """Runs every incomplete member; returns the sweep's exit code: 0 all complete,
    75 stopped by a signal (each running member committed first), 1 a member failed."""
    members = self._definition.members
    pending = [m for m in members
               if not is_complete(definition_lib.member_dir(self._members, m))]
    skipped = len(members) - len(pending)
    configs, seeds = len(self._definition.configs), len(self._definition.seeds)
    logging.info("Sweep %s: %d members (%d configuration%s x %d seed%s); %d complete, %d to run, "
                 "%d at a time, %d TensorFlow thread%s each.", self._members, len(members), configs,
                 "s" * (configs > 1), seeds, "s" * (seeds > 1), skipped, len(pending),
                 self._parallel, self._threads, "s" * (self._threads > 1))
    os.makedirs(os.path.join(self._root, definition_lib.LOGS_DIR), exist_ok=True)
    running: list[_Running] = []
    failed: list[str] = []
    passed_on = 0
    while pending or running:
      if self._signals and passed_on < self._signals:
        passed_on = self._pass_on(running, passed_on)
      while not self._signals and len(running) < self._parallel:
        member = self._next_free(pending)
        if member is None:
          break
        running.append(self._start(member))
      for run in list(running):
        code = run.proc.poll()
        if code is None:
          continue
        running.remove(run)
        run.log.close()
        state = self._finished(run, code)
        if state == "failed":
          failed.append(run.member.name)
        elif state == "restart":
          pending.insert(0, run.member)
      if self._signals and not running:
        break
      time.sleep(POLL_S)
    if self._signals:
      logging.warning("Sweep stopped: every running member committed a checkpoint first (one "
                      "still starting up had none to commit); rerun the same command to go on "
                      "(%d members left).",
                      sum(not is_complete(definition_lib.member_dir(self._members, m))
                          for m in members))
      return errors.EXIT_PREEMPTED
    if failed:
      logging.error("Sweep finished with %d failed member(s): %s; their logs are in %s/. "
                    "Fix the cause and rerun: complete members are skipped.", len(failed),
                    ", ".join(failed), os.path.join(self._root, definition_lib.LOGS_DIR))
      return errors.EXIT_CRASH
    logging.info("Sweep complete: %d members. Report: python -m trainer.report --root_dir=%s",
                 len(members), self._members)
    return errors.EXIT_OK

  def _next_free(self, pending: list) -> definition_lib.Member | None:
    """Takes the first pending member whose run directory no process holds: a
    member of a killed runner may still be committing its last checkpoint (it
    would refuse a second job on its directory, exit 3)."""
    for member in pending:
      holder = _holder(definition_lib.member_dir(self._members, member))
      if holder is None:
        pending.remove(member)
        return member
      if member.name not in self._waiting:
        self._waiting.add(member.name)
        logging.warning("Member %s: its run directory is held by %s; waiting for it to stop.",
                        member.name, holder)
    return None

  def _start(self, member: definition_lib.Member) -> _Running:
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(self._threads),
               TF_NUM_INTEROP_THREADS=str(self._threads), OMP_NUM_THREADS=str(self._threads))
    log_path = self._log_path(member)
    log = open(log_path, "a")  # noqa: SIM115  (closed when the member exits)
    log.write(f"--- {_now()} trainer.sweep starts member {member.name} ---\n")
    log.flush()
    cmd = [self._python, "-m", "trainer.train",
           *self._definition.train_args(member, self._members)]
    # Its own process group: a Ctrl-C in the terminal reaches the runner alone, which
    # passes it on, once, to each member.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=_stop_with_parent)
    step, total = member_progress(definition_lib.member_dir(self._members, member))
    logging.info("Member %s (%s, seed %d) started%s.", member.name, self._label(member),
                 member.seed, f" (resumes from step {step} of {total})" if step else "")
    return _Running(member, proc, log, time.monotonic(), self._outcomes.get(
        member.name, {}).get("stops", 0))

  def _pass_on(self, running: list[_Running], passed_on: int) -> int:
    signum = self._signal_to_pass
    first = passed_on == 0
    logging.warning("Sweep got %s: %s %d running member(s).", signal.Signals(signum).name,
                    "asking to checkpoint and stop" if first else "stopping at once",
                    len(running))
    for run in running:
      try:
        run.proc.send_signal(signal.SIGTERM if first else signum)
      except ProcessLookupError:
        pass
    return self._signals

  def _finished(self, run: _Running, code: int) -> str:
    """Records how the member ended: "complete", "stopped", "restart" or "failed"."""
    seconds = time.monotonic() - run.started
    name, member_dir = run.member.name, definition_lib.member_dir(self._members, run.member)
    step, total = member_progress(member_dir)
    if code == errors.EXIT_OK and is_complete(member_dir):
      state = "complete"
    elif self._signals:  # 75, or 128 + the signal after a second one
      state = "stopped"
    elif code == errors.EXIT_PREEMPTED and run.stops < RETRIES:
      state = "restart"
      run.stops += 1
    else:
      state = "failed"
    self._outcomes[name] = {"state": state, "exit_code": code, "train_step": step,
                            "num_iterations": total, "seconds": round(seconds, 1),
                            "log": os.path.relpath(self._log_path(run.member), self._root),
                            "at": _now(), "stops": run.stops}
    fileio.atomic_write_json(self._outcomes_path, self._outcomes)
    self._publish()
    if state == "failed":
      logging.error("Member %s (%s, seed %d) failed: exit %d after %.0f s; the last lines of %s:"
                    "\n%s", name, self._label(run.member), run.member.seed, code, seconds,
                    self._log_path(run.member), _tail(self._log_path(run.member)))
    else:
      logging.info("Member %s %s: exit %d at step %d of %s after %.0f s.", name,
                   {"complete": "complete", "stopped": "stopped",
                    "restart": "was stopped by another signal; starting it again"}[state],
                   code, step, total, seconds)
    return state

  def _label(self, member: definition_lib.Member) -> str:
    return self._definition.configs[member.config]["label"]

  def _log_path(self, member: definition_lib.Member) -> str:
    return os.path.join(self._root, definition_lib.LOGS_DIR, f"{member.name}.log")

  def _read_outcomes(self) -> dict:
    try:
      return fileio.read_json(self._outcomes_path)
    except (FileNotFoundError, ValueError):
      return {}


def _holder(member_dir: str) -> str | None:
  """Who holds a member's run directory (its lock, or a gs:// run's lease), or None."""
  if urls.is_remote(member_dir):
    from trainer.storage import sessions

    return sessions.member_holder(member_dir)
  lock = os.path.join(member_dir, layout.LOCK_FILE)
  return run_lock.describe_holder(lock) if run_lock.held(lock) else None


def _stop_with_parent() -> None:
  """In the member, before it runs: SIGTERM when the runner dies (SIGKILLed, say),
  so that it commits and stops instead of running on unwatched, holding its run
  directory against the rerun (Linux's PR_SET_PDEATHSIG; elsewhere, nothing)."""
  try:
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
  except (OSError, AttributeError):
    pass


_PR_SET_PDEATHSIG = 1


def read_outcomes(root_dir: str) -> dict:
  try:
    return fileio.read_json(os.path.join(root_dir, definition_lib.OUTCOMES_FILE))
  except (FileNotFoundError, ValueError):
    return {}


def _tail(path: str, lines: int = 5) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:]).rstrip()
  except OSError:
    return "(no log)"


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
