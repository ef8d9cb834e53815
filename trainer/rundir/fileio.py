"""Crash-safe file writes: a file is either absent, old, or completely new."""

import glob
import hashlib
import json
import os
import re
from typing import Any


def write_error_reason(error: Exception) -> str:
  """The short reason of a failed write: an OSError's strerror ("No space left on
  device"), the message of a TensorFlow OpError (which has no strerror), or the
  last clause of another error's message (Reverb's "...; File too large")."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  message = getattr(error, "message", None) or str(error)
  return " ".join(message.split(";")[-1].split())[:200] or type(error).__name__


def fsync(path: str) -> None:
  """Flushes a file's data, or a directory's entries (a rename or create in it), to disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


_TEMPORARY = re.compile(r".+\.tmp-\d+")


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file (`<path>.tmp-<pid>`) and an
  atomic rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  fsync(os.path.dirname(os.path.abspath(path)))


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(chunk_size):
      digest.update(chunk)
  return digest.hexdigest()


def remove_stale_temporaries(directory: str) -> None:
  """Deletes the temporary files of atomic writes that a killed process left in
  `directory` (the caller holds the run's lock: no live writer owns them)."""
  for path in glob.glob(os.path.join(glob.escape(directory), "*.tmp-*")):
    if _TEMPORARY.fullmatch(os.path.basename(path)) and os.path.isfile(path):
      os.remove(path)
