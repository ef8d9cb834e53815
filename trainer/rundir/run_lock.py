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

from trainer.errors import RunDirError
from trainer.rundir import layout


class RunLock:
  """Holds `DIR/run.lock` exclusively until `release()` or process exit."""

  def __init__(self, root_dir: str):
    self._path = os.path.join(root_dir, layout.LOCK_FILE)
    self._fd = None

  def acquire(self) -> None:
    root = os.path.dirname(self._path)
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
        raise RunDirError(
            f"run directory {root} is in use by "
            f"{describe_holder(self._path)}; stop that job first, or use "
            "another --root_dir") from e
      raise RunDirError(f"cannot lock {self._path} ({e.strerror})") from e
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    self._fd = fd

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
