"""The job's secret, and the signatures of what the roles exchange through the server.

Reverb has no authentication: anyone who reaches the replay server's port may
insert into, sample from or reset any table. So what a role *uses* from the
server is signed with a per-job secret that only the job's processes can read,
`DIR/roles/job.key` (32 random bytes, mode 0600, created once by the first role
to start):

- the policy weights the learner pushes (HMAC-SHA256 over the learner's session,
  the train step and every array): a collector assigns only weights that verify,
  from the learner session named in the learner's heartbeat, never an older step;
- each collector's counters (over the task number and both counts): the learner
  counts only records that verify and never lets one collector's count go back
  while the server is the same process (a replayed old record), and a total is
  never more than what reached the replay (`plausible_total`).

The replay items themselves are not signed (docs/security.md: what that costs,
and what stays exposed).
"""

import hashlib
import hmac
import os
import stat
import struct
from collections.abc import Iterable

import numpy as np
from absl import logging

from trainer.errors import RunDirError
from trainer.rundir import layout

KEY_BYTES = 32


def _path(root_dir: str) -> str:
  return os.path.join(root_dir, layout.JOB_KEY_FILE)


def job_key(root_dir: str) -> bytes:
  """The job's secret: created (mode 0600) if the run directory has none yet,
  else read and checked. Two roles starting at once agree: one creates it, the
  other reads it."""
  path = _path(root_dir)
  if not os.path.exists(path):
    _create(path)
  try:
    mode = os.stat(path).st_mode
    with open(path, "rb") as f:
      key = f.read()
  except OSError as e:
    raise RunDirError(f"cannot read the job's secret {path}: {e.strerror}; run every role as "
                      "the user who started the job") from e
  if mode & (stat.S_IRWXG | stat.S_IRWXO):
    raise RunDirError(f"the job's secret {path} is readable by others (mode "
                      f"{stat.S_IMODE(mode):04o}): run 'chmod 600 {path}'")
  if len(key) != KEY_BYTES:
    raise RunDirError(f"the job's secret {path} holds {len(key)} bytes, not {KEY_BYTES}: it is "
                      "damaged; stop every role, delete it, and start them again")
  return key


def _create(path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  temporary = f"{path}.{os.getpid()}.tmp"
  fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(os.urandom(KEY_BYTES))
      f.flush()
      os.fsync(f.fileno())
    try:
      os.link(temporary, path)  # never replaces a key another role created meanwhile
    except FileExistsError:
      pass
  finally:
    os.unlink(temporary)


def _mac(key: bytes, label: bytes, parts: Iterable[bytes]) -> bytes:
  """HMAC-SHA256 in hex: a raw digest ending in a zero byte would lose it in
  Reverb's round trip (numpy's bytes_ strips trailing NULs), 1 time in 256."""
  digest = hmac.new(key, label, hashlib.sha256)
  for part in parts:
    digest.update(struct.pack("<Q", len(part)))
    digest.update(part)
  return digest.hexdigest().encode("ascii")


def _array_parts(values: Iterable[np.ndarray]) -> Iterable[bytes]:
  for value in values:
    value = np.ascontiguousarray(value)
    yield f"{value.dtype.str}{value.shape}".encode()
    yield value.tobytes()


def weights_mac(key: bytes, session: str, train_step: int, values: list[np.ndarray]) -> bytes:
  return _mac(key, b"trainer.weights", [session.encode(), struct.pack("<q", train_step),
                                        *_array_parts(values)])


def counters_mac(key: bytes, task: int, env_steps: int, episodes: int) -> bytes:
  return _mac(key, b"trainer.counters", [struct.pack("<qqq", task, env_steps, episodes)])


def verify(expected: bytes, given) -> bool:
  given = given.item() if isinstance(given, np.ndarray) else given
  return isinstance(given, bytes) and hmac.compare_digest(expected, given)


def plausible_total(env_steps: int, episodes: int, inserts: int, *, sequence_length: int,
                    open_episodes: int) -> bool:
  """Whether `env_steps` counted over the collectors can have reached a replay
  that received `inserts` items: each env step ends at most one item, except
  the first steps of each episode, fewer than a sequence (`open_episodes`: those
  still running, one per environment; the bound allows a whole sequence each)."""
  if env_steps < 0 or episodes < 0 or episodes > env_steps:
    return False
  return env_steps <= inserts + sequence_length * (episodes + open_episodes)


class Rejections:
  """Logs each kind of rejected input once (an attacker must not flood the log),
  and counts them."""

  def __init__(self, who: str):
    self._who = who
    self.counts: dict[str, int] = {}

  def reject(self, kind: str, message: str) -> None:
    self.counts[kind] = self.counts.get(kind, 0) + 1
    if self.counts[kind] == 1:
      logging.error("%s: %s; ignored (logged once; another process may be writing to the replay "
                    "server: see docs/security.md).", self._who, message)
