"""Run directories on object storage: `gs://bucket/path` names, and where one is staged.

Pure (no client, no TensorFlow): the commands ask `is_remote` before anything loads.

A job on `gs://` runs in a local staging directory with the layout of any run directory
(docs/object_storage.md): what it commits there is uploaded, and only what is uploaded and
sealed by its marker object counts. The staging directory is a cache: losing it loses
nothing committed.
"""

import hashlib
import os
import re

SCHEME = "gs://"
# Where staging directories go unless TRAINER_STAGING_DIR says: the user's cache, so that
# a restart on the same machine finds the frame replay's immutable segments again.
STAGING_ENV = "TRAINER_STAGING_DIR"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def is_remote(path: str | None) -> bool:
  return bool(path) and path.startswith(SCHEME)


def split(url: str) -> tuple[str, str]:
  """(bucket, prefix without slashes at its ends) of `gs://bucket/prefix`.

  Raises:
    ValueError: one line naming the problem and the form expected.
  """
  if not is_remote(url):
    raise ValueError(f"{url} is not a gs:// URL")
  bucket, _, prefix = url[len(SCHEME):].partition("/")
  if not _BUCKET.fullmatch(bucket):
    raise ValueError(f"{url}: {bucket!r} is not a bucket name; pass --root_dir=gs://BUCKET/PATH")
  prefix = prefix.strip("/")
  if not prefix:
    raise ValueError(f"{url} names a whole bucket; a run needs its own path in it: pass "
                     f"--root_dir=gs://{bucket}/PATH")
  if any(part in ("", ".", "..") for part in prefix.split("/")):
    raise ValueError(f"{url} has an empty, '.' or '..' path component; pass a plain "
                     f"gs://{bucket}/PATH")
  return bucket, prefix


def canonical(url: str) -> str:
  bucket, prefix = split(url)
  return f"{SCHEME}{bucket}/{prefix}"


def object_name(prefix: str, rel: str) -> str:
  """The object of the file `rel` (a path from the run directory) of the run at `prefix`."""
  return f"{prefix}/{rel.replace(os.sep, '/')}"


def staging_root() -> str:
  explicit = os.environ.get(STAGING_ENV)
  if explicit:
    return os.path.abspath(explicit)
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "trainer", "staging")


def staging_dir(url: str) -> str:
  """The local staging directory of the run at `url`: one per run directory, readable
  (`bucket/path`) and unique (a hash of the URL)."""
  bucket, prefix = split(url)
  digest = hashlib.sha256(canonical(url).encode()).hexdigest()[:10]
  readable = re.sub(r"[^A-Za-z0-9._-]+", "_", prefix)[-80:]
  return os.path.join(staging_root(), bucket, f"{readable}-{digest}")
