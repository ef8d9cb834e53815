"""Crash-safe file writes: a file is either absent, old, or completely new."""

import hashlib
import json
import os
from typing import Any


def write_error_reason(error: Exception) -> str | None:
  """The short reason of a failed write: an OSError's strerror ("No space left on
  device"), or the message of a TensorFlow OpError (which has no strerror)."""
  if isinstance(error, OSError):
    return error.strerror
  return error.message  # tf.errors.OpError


def fsync(path: str) -> None:
  """Flushes a file's data, or a directory's entries (a rename or create in it), to disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file and an atomic rename."""
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

