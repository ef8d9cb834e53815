"""The objects of a bucket, through Google's own client (`google-cloud-storage`).

What the run directory needs of object storage, and nothing more: list a prefix, upload a
file, download one, read and write a small object with a generation precondition (the
lease), copy and delete. A single object write is atomic and reads are strongly
consistent (GCS's guarantees, which the commit protocol rests on).

Credentials are Application Default Credentials (`gcloud auth application-default login`,
a VM's or pod's service account, or GOOGLE_APPLICATION_CREDENTIALS). With
STORAGE_EMULATOR_HOST (or the TF plugin's CLOUD_STORAGE_EMULATOR_ENDPOINT) set, the client
talks to that emulator, anonymously.
"""

import dataclasses
import datetime
import os
import warnings

from trainer.errors import RunDirError

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # google-cloud-storage's
TF_EMULATOR_ENV = "CLOUD_STORAGE_EMULATOR_ENDPOINT"  # TensorFlow's GCS plugin's
# TensorFlow's GCS plugin (tensorflow-io-gcs-filesystem) crashes on its first call unless
# every cache knob is set, and merging checkpoints crashes when the read cache is 0
# (tensorflow/io#2020). trainer itself reads and writes buckets through this module, not
# the plugin; the defaults are for what users point TensorFlow at (tf.saved_model.load of a
# gs:// export), and never override a value of the user's.
TF_PLUGIN_DEFAULTS = {
    "GCS_READ_CACHE_BLOCK_SIZE_MB": "16",
    "GCS_READ_CACHE_MAX_SIZE_MB": "64",
    "GCS_READ_CACHE_MAX_STALENESS": "0",
    "GCS_STAT_CACHE_MAX_AGE": "0",
    "GCS_STAT_CACHE_MAX_ENTRIES": "1",
}


def set_environment_defaults() -> None:
  """The emulator's two names agree, and TensorFlow's GCS plugin gets its cache knobs."""
  emulator = os.environ.get(EMULATOR_ENV) or os.environ.get(TF_EMULATOR_ENV)
  if emulator:
    os.environ.setdefault(EMULATOR_ENV, emulator)
    os.environ.setdefault(TF_EMULATOR_ENV, emulator)
    os.environ.setdefault("GOOGLE_CLOUD_CPP_STORAGE_REST_CONFIG", "disable-xml")
  for key, value in TF_PLUGIN_DEFAULTS.items():
    os.environ.setdefault(key, value)


@dataclasses.dataclass(frozen=True)
class Object:
  name: str
  size: int
  generation: int
  updated: datetime.datetime


class Conflict(Exception):
  """A write's precondition failed: the object is not what the writer expected."""


class Bucket:
  """One bucket; every failure to reach it is a RunDirError naming the fix."""

  def __init__(self, name: str):
    set_environment_defaults()
    with warnings.catch_warnings():  # its deprecation notices are not the user's business
      warnings.simplefilter("ignore")
      from google.api_core import exceptions
      from google.cloud import storage
    self._exceptions = exceptions
    self.name = name
    try:
      if os.environ.get(EMULATOR_ENV):
        from google.auth.credentials import AnonymousCredentials
        client = storage.Client(project="test", credentials=AnonymousCredentials())
      else:
        client = storage.Client()
    except Exception as e:  # google.auth's DefaultCredentialsError, and kin
      raise RunDirError(
          f"cannot reach gs://{name} ({_reason(e)}); give this machine credentials (`gcloud "
          "auth application-default login`, a service account, or "
          f"GOOGLE_APPLICATION_CREDENTIALS), or set {EMULATOR_ENV} for an emulator") from e
    self._bucket = client.bucket(name)
    self._client = client

  def _call(self, what: str, fn, *args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except self._exceptions.PreconditionFailed as e:
      raise Conflict(what) from e
    except self._exceptions.NotFound as e:
      raise FileNotFoundError(f"gs://{self.name}/{what}") from e
    except Exception as e:
      raise RunDirError(f"cannot {what} in gs://{self.name} ({_reason(e)}); check the "
                        "bucket's name, this machine's credentials and network") from e

  def list(self, prefix: str) -> dict[str, Object]:
    """Every object under `prefix` (a full listing, no delimiter: a wildcard in a middle
    component of a glob is what TensorFlow's plugin gets wrong)."""
    def listing():
      return {b.name: Object(b.name, b.size, b.generation, b.updated)
              for b in self._client.list_blobs(self._bucket, prefix=prefix)}
    try:
      return self._call(f"list {prefix}", listing)
    except FileNotFoundError as e:
      raise self._no_bucket() from e

  def _no_bucket(self) -> RunDirError:
    return RunDirError(f"there is no bucket gs://{self.name}: create it (gcloud storage buckets "
                       f"create gs://{self.name}) or fix the --root_dir")

  def stat(self, name: str) -> Object | None:
    blob = self._call(f"read {name}", self._bucket.get_blob, name)
    return None if blob is None else Object(blob.name, blob.size, blob.generation, blob.updated)

  def upload(self, path: str, name: str) -> None:
    from google.cloud.storage.retry import DEFAULT_RETRY
    blob = self._bucket.blob(name)
    # Opened first: a file deleted meanwhile (an export's retention) is FileNotFoundError
    # here, and one deleted once open is still read whole. Our names are written with one
    # content each: retrying the upload is safe.
    with open(path, "rb") as f:
      try:
        self._call(f"upload {name}", blob.upload_from_file, f, checksum="crc32c",
                   retry=DEFAULT_RETRY)
      except FileNotFoundError as e:
        raise self._no_bucket() from e

  def download(self, name: str, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    self._call(f"download {name}", self._bucket.blob(name).download_to_filename, path,
               checksum="crc32c")

  def read(self, name: str) -> tuple[bytes, int]:
    """(the object's bytes, its generation); FileNotFoundError if it is absent."""
    blob = self._call(f"read {name}", self._bucket.get_blob, name)
    if blob is None:
      raise FileNotFoundError(f"gs://{self.name}/{name}")
    return self._call(f"read {name}", blob.download_as_bytes), blob.generation

  def write(self, name: str, data: bytes, *, if_generation_match: int | None = None) -> int:
    """Writes one small object; with `if_generation_match` (0: only if absent) the write
    happens only if the object is at that generation, else Conflict. Returns its generation."""
    blob = self._bucket.blob(name)
    kwargs = {} if if_generation_match is None else {"if_generation_match": if_generation_match}
    try:
      self._call(f"write {name}", blob.upload_from_string, data, **kwargs)
    except FileNotFoundError as e:  # a write finds no bucket, not no object
      raise self._no_bucket() from e
    return blob.generation

  def delete(self, name: str, *, if_generation_match: int | None = None) -> None:
    kwargs = {} if if_generation_match is None else {"if_generation_match": if_generation_match}
    try:
      self._call(f"delete {name}", self._bucket.blob(name).delete, **kwargs)
    except FileNotFoundError:
      pass  # gone already: what a delete wants

  def copy(self, name: str, new_name: str) -> None:
    self._call(f"copy {name}", self._bucket.copy_blob, self._bucket.blob(name), self._bucket,
               new_name)


def _reason(error: Exception) -> str:
  message = getattr(error, "message", None) or str(error) or type(error).__name__
  return " ".join(message.split())[:200]
