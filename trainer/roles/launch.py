r"""Runs every role of a job on this machine and supervises them.

  python -m trainer.launch --root_dir=DIR --gin_file=configs/X.gin [--gin_bindings=...] \
      [--collectors=N] [--allow_config_change]

Takes the run directory's launch lock (`DIR/launch.lock`) before it writes
anything, and refuses (exit 3, one line naming the holder) a directory that
another launch, a live replay server or a live job holds. Then it starts a
replay server on a loopback port that the server picks and binds itself (its
address, written into `DIR/roles/replay_address.json`, is printed once known),
the learner and N collectors (each a process of its own, the commands of
trainer/cli/roles.py, which read the address from the run directory), and
supervises them (trainer/roles/supervisor.py: restarts, back-off, failure
limit, stop order and grace).

Each role's output goes to `DIR/roles/logs/<role>.log`; the learner's lines,
and the others' warnings and errors, are also printed here, prefixed with the
role. This process never loads TensorFlow.
"""

import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

from trainer.errors import RunDirError
from trainer.roles import rolefiles
from trainer.roles.supervisor import RoleSpec, Supervisor
from trainer.rundir import layout, run_lock

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
  """In the child: a SIGTERM when launch dies (SIGKILL included), so no role
  outlives it; the learner then commits a bundle and exits 75."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
  except OSError:
    pass


class RoleProcess:
  """A role's process; its output is pumped into its log (and printed: every
  line with `echo_all`, else warnings and errors until launch stops it)."""

  def __init__(self, spec: RoleSpec):
    self._spec = spec
    self._stopping = False  # stopped by launch: its last lines go to its log alone
    log = open(spec.log_path, "a", buffering=1)  # noqa: SIM115  (closed by the pump)
    self._popen = subprocess.Popen(
        list(spec.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True, preexec_fn=_die_with_parent)
    self._pump_thread = threading.Thread(target=self._pump, args=(log,), daemon=True)
    self._pump_thread.start()

  def _pump(self, log) -> None:
    with log:
      for line in self._popen.stdout:
        log.write(line)
        if self._spec.echo_all or (not self._stopping
                                   and (line[:1] in ("W", "E", "F") or "error:" in line)):
          sys.stderr.write(f"[{self._spec.name}] {line}")

  def poll(self) -> int | None:
    return self._popen.poll()

  def send_signal(self, signum: int) -> None:
    self._stopping = True
    self._popen.send_signal(signum)

  def wait(self) -> int:
    code = self._popen.wait()
    self._pump_thread.join(timeout=5)  # its last lines into its log before launch exits
    return code


class _Clock:
  monotonic = staticmethod(time.monotonic)
  sleep = staticmethod(time.sleep)


class _AddressWatch:
  """Says where the replay server serves, once it has written it (and again
  after a restart), and remembers its port."""

  def __init__(self, root_dir: str):
    self._root, self._said = root_dir, None
    self.port: int | None = None

  def __call__(self) -> None:
    incarnation = rolefiles.server_incarnation(self._root)
    address = rolefiles.server_address(self._root)
    if incarnation is not None and address and incarnation != self._said:
      self._said = incarnation
      self.port = int(address.rsplit(":", 1)[1])
      _say(f"The replay server serves at {address}.")


def _starter(address: _AddressWatch):
  """Starts a role's process; a restarted replay server takes the port of the
  one before it: the learner's and the collectors' Reverb clients retry that
  address (a sampler blocked in Reverb never notices a server that came back
  elsewhere)."""

  def start(spec: RoleSpec) -> RoleProcess:
    if spec.name == rolefiles.SERVER and address.port is not None:
      argv = tuple(f"--port={address.port}" if a == "--port=0" else a for a in spec.argv)
      spec = dataclasses.replace(spec, argv=argv)
    return RoleProcess(spec)

  return start


def role_specs(root_dir: str, config_args: list[str], collectors: int,
               allow_config_change: bool) -> list[RoleSpec]:
  """The server (first), the learner and the collectors of a launch."""
  common = [f"--root_dir={root_dir}", *config_args]
  logs = os.path.join(root_dir, layout.ROLE_LOGS_DIR)

  def role(name, module, *extra, echo_all=False):
    return RoleSpec(name, (sys.executable, "-m", module, *common, *extra),
                    os.path.join(logs, f"{name}.log"), echo_all)

  return [role(rolefiles.SERVER, "trainer.replay_server", "--port=0", "--host=localhost"),
          role(rolefiles.LEARNER, "trainer.learn",
               *(["--allow_config_change"] if allow_config_change else []), echo_all=True),
          *(role(rolefiles.collector(i), "trainer.collect", f"--task={i}")
            for i in range(collectors))]


def hold_run_dir(root_dir: str) -> run_lock.RunLock:
  """Takes `DIR/launch.lock`, first thing: a directory that another launch, a
  live replay server or a live job holds is refused (RunDirError, exit 3)
  before anything is written; then the address of a server that is gone is
  removed, so that no role reads it."""
  _refuse_if_held(root_dir, layout.LAUNCH_LOCK_FILE)  # read only: nothing is written if refused
  os.makedirs(root_dir, exist_ok=True)
  lock = run_lock.RunLock(root_dir, layout.LAUNCH_LOCK_FILE, holder="trainer.launch")
  lock.acquire()
  try:
    _refuse_if_held(root_dir)  # again, holding the lock: one that started meanwhile
  except RunDirError:
    lock.release()
    raise
  try:
    os.remove(os.path.join(root_dir, layout.SERVER_ADDRESS_FILE))
  except FileNotFoundError:
    pass
  os.makedirs(os.path.join(root_dir, layout.ROLE_LOGS_DIR), exist_ok=True)
  return lock


def _refuse_if_held(root_dir: str, *also: str) -> None:
  """RunDirError naming the holder of the server's or the job's lock (or `also`'s)."""
  holders = {layout.LAUNCH_LOCK_FILE: "trainer.launch", layout.SERVER_LOCK_FILE: "replay server",
             layout.LOCK_FILE: "job"}
  for name in (*also, layout.SERVER_LOCK_FILE, layout.LOCK_FILE):
    lock = run_lock.RunLock(root_dir, name, holder=holders[name])
    if run_lock.held(lock.path):
      raise RunDirError(lock.busy_message())


class Launch:
  """A job as roles on this machine; `run()` returns launch's exit code."""

  def __init__(self, root_dir: str, config_args: list[str], collectors: int,
               allow_config_change: bool = False):
    self._root = root_dir
    self._roles = role_specs(root_dir, config_args, collectors, allow_config_change)
    self._signals = 0
    address = _AddressWatch(root_dir)
    self._supervisor = Supervisor(
        self._roles, learner=rolefiles.LEARNER, start=_starter(address), clock=_Clock(),
        say=_say, stop_requested=lambda: self._signals > 0, on_tick=address)

  def _on_signal(self, signum, frame) -> None:
    del frame
    self._signals += 1
    if self._signals == 1:
      _say(f"Received {signal.Signals(signum).name}: stopping the learner (it commits a "
           "checkpoint), then the other roles (send it again to stop them all at once).")
      return
    _say("Second signal: killing every role now; the last committed checkpoint stays valid.")
    self._supervisor.kill_all()
    os._exit(128 + signum)

  def run(self) -> int:
    lock = hold_run_dir(self._root)
    try:
      for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, self._on_signal)
      _say(f"Launching {self._root}: a replay server, the learner and "
           f"{len(self._roles) - 2} collector(s); logs in "
           f"{os.path.join(self._root, layout.ROLE_LOGS_DIR)}.")
      return self._supervisor.run()
    finally:
      lock.release()


def _say(message: str) -> None:
  stamp = time.strftime("%m%d %H:%M:%S")
  sys.stderr.write(f"I{stamp} launch] {message}\n")
  sys.stderr.flush()
