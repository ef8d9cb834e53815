"""One job per run directory on object storage: a lease object, `DIR/run.lease`.

A bucket has no `flock`. The lease is an object created only if absent (generation
precondition 0), rewritten by its holder every RENEW_S with a precondition on the
generation it wrote last, and deleted on release (precondition again). A second job finds
it and is refused with the holder's name, as the local lock refuses. A job that dies
stops renewing: once the lease is older than its TTL another job takes it over, again
through a generation precondition, so two jobs racing for it cannot both win. A lease of a
process of this host that no longer lives is taken over at once (a requeue on the same
machine need not wait), and one that stopped being renewed is waited for, not refused.

A holder that cannot renew for longer than the TTL, or finds its lease taken, has lost the
run directory: it stops at once (exit 3) without writing another object.
"""

import datetime
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from absl import logging

from trainer.errors import EXIT_RUN_DIR, RunDirError
from trainer.storage.gcs import Bucket, Conflict

LEASE_FILE = "run.lease"
# This process, told apart from an earlier one of the same pid (a restarted container).
_INCARNATION = uuid.uuid4().hex


def _machine() -> str:
  """This boot of this kernel and this pid namespace: two containers that share a host
  name (host networking) differ here, so neither judges the other's pids."""
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      boot = f.read().strip()
    return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
  except OSError:
    return ""


_MACHINE = _machine()
TTL_ENV = "TRAINER_LEASE_TTL_S"  # tests and impatient users; the default suits preemption


def ttl_s() -> float:
  return float(os.environ.get(TTL_ENV, "60"))


class Lease:
  """Holds `<prefix>/run.lease` in `bucket` until `release()` (or the process dies).

  `progress`: called at each renewal, its dict (the live train step) goes into the record,
  for `trainer.status`. `on_lost`: what to do once the lease is lost (default: exit 3).
  """

  def __init__(self, bucket: Bucket, name: str, url: str, *,
               progress: Callable[[], dict] | None = None,
               on_lost: Callable[[str], None] | None = None):
    self._bucket, self._name, self._url = bucket, name, url
    self._progress = progress or dict
    self._on_lost = on_lost or _exit_lost
    self._ttl = ttl_s()
    self._generation: int | None = None
    self._renewed = 0.0
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._record = {"host": socket.gethostname(), "pid": os.getpid(),
                    "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "ttl_s": self._ttl, "incarnation": _INCARNATION, "machine": _MACHINE,
                    "token": uuid.uuid4().hex}  # this lease: what `check` and a retry know it by

  @property
  def generation(self) -> int | None:
    return self._generation

  @property
  def token(self) -> str:
    return self._record["token"]

  def _ours(self, record: dict) -> bool:
    return record.get("token") == self.token

  def acquire(self) -> None:
    for _ in range(100):
      try:
        self._generation = self._bucket.write(self._name, self._data(), if_generation_match=0)
        break
      except Conflict:
        pass
      current = self._current()
      if current is None:
        continue  # released meanwhile: try again
      record, generation, age = current
      if self._ours(record):
        self._generation = generation  # our own write, its reply lost and retried
        break
      if not self._may_take(record, age):
        raise RunDirError(busy_message(self._url, record, age))
      try:
        self._generation = self._bucket.write(self._name, self._data(),
                                              if_generation_match=generation)
        logging.warning("Took over the run directory's lease from %s (%s).",
                        describe(record), "its process is gone" if age < self._ttl
                        else f"not renewed for {age:.0f} s")
        break
      except Conflict:
        continue  # another job won the race (or our retried write did): look again
    else:
      raise RunDirError(f"cannot take the lease {self._url}/{LEASE_FILE}: it changes hands "
                        "constantly; stop the other jobs on this run directory")
    self._renewed = time.monotonic()
    self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
    self._thread.start()

  def _may_take(self, record: dict, age: float) -> bool:
    """Whether a lease of `age` seconds since its last renewal may be taken over, after
    waiting for it to expire when it looks abandoned."""
    if age >= self._ttl or _dead_here(record):
      return True
    if age < 2 * renew_every(self._ttl):
      return False  # renewed lately: a live job
    logging.warning("The run directory's lease (%s) was last renewed %.0f s ago; waiting up "
                    "to %.0f s for it to expire.", describe(record), age, self._ttl - age)
    time.sleep(self._ttl - age + 0.5)
    current = self._current()
    return current is None or current[2] >= self._ttl

  def _current(self) -> tuple[dict, int, float] | None:
    """(record, generation, seconds since its last write), or None if absent; a record
    that does not parse is {} (a garbled lease expires as any other)."""
    current = _read(self._bucket, self._name)
    return None if current is None else (current[0] or {}, current[1], current[2])

  def _data(self) -> bytes:
    return json.dumps({**self._record, **self._progress(), "renewed": time.time()}).encode()

  def _renew_loop(self) -> None:
    while not self._stop.wait(renew_every(self._ttl)):
      try:
        self._generation = self._bucket.write(self._name, self._data(),
                                              if_generation_match=self._generation)
        self._renewed = time.monotonic()
      except Conflict:
        current = self._current()
        if current is not None and self._ours(current[0]):
          self._generation = current[1]  # our write landed; its retry found it
          self._renewed = time.monotonic()
          continue
        self._lost("another job took it over")
        return
      except RunDirError as e:
        if time.monotonic() - self._renewed > self._ttl:
          self._lost(f"it could not be renewed for {self._ttl:.0f} s: {e}")
          return
        logging.warning("Could not renew the run directory's lease (%s); retrying.", e)

  def _lost(self, why: str) -> None:
    if not self._stop.is_set():
      self._on_lost(f"lost the lease of {self._url} ({why}); stopping without writing more")

  def check(self) -> None:
    """Raises RunDirError unless the lease is still ours (read back): a last check
    before a commit marker is written."""
    current = self._current()
    # By the holder's token, not the generation: a renewal may land between the two.
    if current is None or not self._ours(current[0]):
      raise RunDirError(f"lost the lease of {self._url}; the commit was not sealed")

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._generation is not None:
      try:
        current = self._current()
        # Ours (by its token: a renewal's reply may have been lost), deleted at the generation
        # read; the precondition alone would do on GCS, the emulator ignores it on deletes.
        if current is not None and self._ours(current[0]):
          self._bucket.delete(self._name, if_generation_match=current[1])
      except (Conflict, RunDirError) as e:
        logging.warning("Could not release the lease of %s (%s); it expires in %.0f s.",
                        self._url, e, self._ttl)
      self._generation = None

  def __enter__(self) -> "Lease":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def renew_every(ttl: float) -> float:
  return ttl / 4


def _dead_here(record: dict) -> bool:
  """Whether the lease's holder was a process of this host that is gone (or an earlier
  process of our pid: a restarted container reuses its pids)."""
  if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
    return False
  if not _MACHINE or record.get("machine") != _MACHINE:
    return False  # another boot, or another pid namespace: its pids are not ours to judge
  if record["pid"] == os.getpid():
    return record.get("incarnation") != _INCARNATION
  try:
    os.kill(record["pid"], 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    return False
  return False


def describe(record: dict) -> str:
  if {"host", "pid", "since"} <= record.keys():
    return f"host {record['host']}, pid {record['pid']}, since {record['since']}"
  return "another job (holder unknown)"


def busy_message(url: str, record: dict, age: float) -> str:
  return (f"run directory {url} is in use by {describe(record)} (its lease renewed {age:.0f} s "
          "ago); stop that job first, or use another --root_dir")


def _read(bucket: Bucket, name: str) -> tuple[dict | None, int, float] | None:
  """(the lease's record, None if it does not parse; its generation; seconds since its last
  write), or None if there is no lease."""
  stat = bucket.stat(name)
  if stat is None:
    return None
  try:
    data, generation = bucket.read(name)
  except FileNotFoundError:
    return None
  try:
    record = json.loads(data)
  except ValueError:
    record = None
  age = (datetime.datetime.now(datetime.UTC) - stat.updated).total_seconds()
  return (record if isinstance(record, dict) or record is None else {}), generation, max(age, 0.0)


def read(bucket: Bucket, name: str) -> tuple[dict, float] | None:
  """(the lease's record, seconds since its last renewal), or None (no lease, or one that
  does not parse): for trainer.status, the sweep runner and launch's fence."""
  current = _read(bucket, name)
  if current is None or current[0] is None:
    return None
  return current[0], current[2]


def _exit_lost(message: str) -> None:
  logging.error("%s.", message)
  logging.flush()
  os._exit(EXIT_RUN_DIR)
