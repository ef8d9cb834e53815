"""One job per run directory: an exclusive lock on `DIR/run.lock`.

The lock is an OS file lock (`flock`), held for the life of the process. The
kernel drops it when the holder dies however it dies (SIGKILL, OOM, machine
reboot), so a lock left by a preempted job never needs manual cleanup: the
next job simply takes it. The file also records who holds it, so a refused
job can name the holder.

On a shared filesystem, `flock` is as good as the filesystem's locking: NFSv4
(and Linux NFSv3 clients with lockd) map it to byte-range locks that the server
releases when the client's lease expires; filesystems without lock support
(some FUSE mounts) accept the call but do not exclude other machines.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import time

from trainer.errors import RunDirError
from trainer.rundir import layout


class RunLock:
  """Holds `DIR/run.lock` (or another lock file of the run) exclusively until
  `release()` or process exit.

  `holder`: what holds it, for the refusal of another ("job": the training job;
  "trainer.launch", "replay server": the other locks of a job run as roles).
  """

  LIVE_EVERY_S = 5.0  # `note_step` rewrites the record at most this often

  def __init__(self, root_dir: str, lock_file: str = layout.LOCK_FILE, *, holder: str = "job"):
    self._root = root_dir
    self._path = os.path.join(root_dir, lock_file)
    self._holder = holder
    self._fd = None
    self._record: dict = {}
    self._noted = 0.0

  @property
  def path(self) -> str:
    return self._path

  def acquire(self) -> None:
    try:
      # O_NOFOLLOW: a lock file that is a symlink would have its target overwritten.
      fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
      raise RunDirError(self._open_problem(e)) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno in (errno.EAGAIN, errno.EACCES):
        raise RunDirError(self.busy_message()) from e
      raise RunDirError(f"cannot lock {self._path} ({e.strerror})") from e
    self._record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    self._fd = fd
    self._write()

  def busy_message(self) -> str:
    """The one line refusing a second holder: who holds it, and what to do."""
    holder = describe_holder(self._path)
    who = holder if self._holder == "job" else f"a {self._holder} ({holder})"
    return (f"run directory {self._root} is in use by {who}; stop that {self._holder} first, "
            "or use another --root_dir")

  def note_step(self, train_step: int) -> None:
    """Records the holder's live train step in the lock file, at most every
    `LIVE_EVERY_S` (`trainer.status` shows it before the first bundle)."""
    now = time.monotonic()
    if self._fd is None or now - self._noted < self.LIVE_EVERY_S:
      return
    self._noted = now
    self._record.update(train_step=int(train_step), time=time.time())
    try:
      self._write()
    except OSError:
      pass  # advice for status; a full disk is reported by what writes the run's state

  def _write(self) -> None:
    data = json.dumps(self._record).encode()
    os.pwrite(self._fd, data, 0)
    os.ftruncate(self._fd, len(data))

  def _open_problem(self, error: OSError) -> str:
    if error.errno == errno.ELOOP or os.path.islink(self._path):
      return (f"{self._path} is a symbolic link; the lock must be a plain file: remove the "
              "link and run the same command again")
    if error.errno == errno.EISDIR or os.path.isdir(self._path):
      return (f"{self._path} is a directory; the lock must be a plain file: remove it and run "
              "the same command again")
    return (f"cannot open the lock file {self._path} ({error.strerror}); fix its permissions, "
            "or use another --root_dir")

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # Closing drops the flock.
      self._fd = None

  def __enter__(self) -> "RunLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def held(lock_path: str) -> bool:
  """Whether a live process holds the lock at `lock_path` (read only: nothing is written)."""
  try:
    fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW)
  except OSError:
    return False  # no lock file (or none that a job could hold)
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError as e:
    return e.errno in (errno.EAGAIN, errno.EACCES)
  finally:
    os.close(fd)  # drops the probe's shared lock
  return False


def holder_record(lock_path: str) -> dict:
  """What the lock's holder wrote of itself (host, pid, since; a job's live
  train step and its time), or {}."""
  try:
    with open(lock_path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


def describe_holder(lock_path: str) -> str:
  """'host H, pid P, since T' from a lock file, or a fallback phrase."""
  try:
    with open(lock_path) as f:
      holder = json.load(f)
    return f"host {holder['host']}, pid {holder['pid']}, since {holder['since']}"
  except (OSError, ValueError, KeyError):
    return "another job (holder unknown)"


def run_dir_holding(path: str, root_dir: str) -> str | None:
  """The run directory that `path` lies in (symlinks resolved), or None: the
  run `root_dir`, or any directory above `path` holding a config or a lock (a
  new job holds its lock before it writes its config)."""
  real, run_root = os.path.realpath(path), os.path.realpath(root_dir)
  probe = real
  while True:
    if probe == run_root or any(os.path.isfile(os.path.join(probe, name))
                                for name in (layout.CONFIG_FILE, layout.LOCK_FILE)):
      return probe
    parent = os.path.dirname(probe)
    if parent == probe:
      return None
    probe = parent
