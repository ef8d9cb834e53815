"""How a command works on a gs:// run directory: in a local directory, with what it needs
of the bucket pulled first and what it writes pushed after.

- `staged_job` (trainer.train, the learner of trainer.launch): takes the lease, pulls the
  newest verified bundle into the run's staging directory, uploads each commit
  (`mirror`), and at the end what changed; releases the lease.
- `writing_view` (trainer.export): the lease, the bundles' markers and agent checkpoints
  and the exports in a temporary directory; what the command adds is uploaded.
- `reading_view` (trainer.status, trainer.evaluate, trainer.plot): the files the command
  reads, in a temporary directory; nothing is written to the bucket unless the command
  asks (`publish`: a plot's picture).
"""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

from absl import logging

from trainer.errors import ConfigError, RunDirError
from trainer.rundir import hooks, layout, run_lock
from trainer.storage import transfer, urls
from trainer.storage.gcs import Conflict
from trainer.storage.lease import LEASE_FILE, Lease
from trainer.storage.mirror import Mirror
from trainer.storage.remote import RemoteRun


def remote_run(url: str) -> RemoteRun:
  """The run at `url`; a malformed URL is a usage error (exit 2)."""
  try:
    urls.split(url)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  return RemoteRun(url)


def _progress(staging: str) -> Callable[[], dict]:
  """The live train step the job records in its local lock, for the lease's record."""
  def progress() -> dict:
    record = run_lock.holder_record(os.path.join(staging, layout.LOCK_FILE))
    return {k: record[k] for k in ("train_step", "time") if k in record}
  return progress


@contextlib.contextmanager
def _leased_and_pulled(url: str) -> Iterator[tuple[RemoteRun, str, Lease, dict[str, tuple]]]:
  """The run at `url`, its staging directory, its lease (held), and the side files pulled
  with its newest verified bundle: what a job, or a launch of one, starts from."""
  run = remote_run(url)
  staging = urls.staging_dir(url)
  with Lease(run.bucket, run.name(LEASE_FILE), run.url, progress=_progress(staging)) as lease:
    step, side = transfer.pull_for_resume(run, staging)
    logging.info("Staging %s in %s (%s).", run.url, staging,
                 "a new run" if step is None and layout.CONFIG_FILE not in side
                 else f"its newest verified bundle: {step}")
    yield run, staging, lease, side


def _shared_objects(run: RemoteRun) -> dict[str, int]:
  """The shared segments the bucket holds ({rel: size}): a mirror uploads no other twice."""
  return {rel: obj.size for rel, obj in run.listing().items()
          if rel.startswith(layout.SHARED_DIR + "/")}


@contextlib.contextmanager
def staged_job(url: str) -> Iterator[str]:
  """Yields the staging directory of the job at `url`, its lease held and its newest
  verified bundle pulled; every commit there is sealed in the bucket."""
  with _leased_and_pulled(url) as (run, staging, lease, side):
    mirror = Mirror(run, staging, lease=lease, known=side, shared=_shared_objects(run))
    hooks.register(staging, mirror)
    try:
      yield staging
    finally:
      hooks.unregister(staging)
      mirror.close()


# trainer.launch holds a gs:// run's lease; its learner role seals the bundles, told where
# and under which lease by these.
SEAL_ENV = "TRAINER_SEAL_INTO"
TOKEN_ENV = "TRAINER_LEASE_TOKEN"
PULLED_FILE = ".pulled.json"  # hidden: never uploaded


@contextlib.contextmanager
def staged_roles(url: str) -> Iterator[str]:
  """trainer.launch's `staged_job`: the lease held by launch and the newest verified bundle
  pulled; the learner role it starts (which inherits the environment) seals each commit."""
  with _leased_and_pulled(url) as (run, staging, lease, side):
    with open(os.path.join(staging, PULLED_FILE), "w") as f:
      json.dump(side, f)  # for the learner's mirror: what the bucket holds as staged
    os.environ.update({SEAL_ENV: run.url, TOKEN_ENV: lease.token})
    try:
      yield staging
    finally:
      for key in (SEAL_ENV, TOKEN_ENV):
        os.environ.pop(key, None)


@contextlib.contextmanager
def sealing_learner(root_dir: str) -> Iterator[None]:
  """The learner role of a launch on gs://: its commits in `root_dir` (the staging
  directory) are sealed in the bucket, fenced by launch's lease. Else nothing."""
  url = os.environ.get(SEAL_ENV)
  if not url:
    yield
    return
  run = RemoteRun(url)
  fence = LeaseFence(run, os.environ.get(TOKEN_ENV, ""))
  try:
    with open(os.path.join(root_dir, PULLED_FILE)) as f:
      known = {rel: tuple(sig) for rel, sig in json.load(f).items()}
  except (OSError, ValueError):
    known = {}
  mirror = Mirror(run, root_dir, lease=fence, shared=_shared_objects(run), known=known)
  hooks.register(root_dir, mirror)
  try:
    yield
  finally:
    hooks.unregister(root_dir)
    mirror.close()


class LeaseFence:
  """`check()`: the lease is still held by the launch that started this role."""

  def __init__(self, run: RemoteRun, token: str):
    self._run, self._token = run, token

  def check(self) -> None:
    from trainer.storage import lease

    held = lease.read(self._run.bucket, self._run.name(LEASE_FILE))
    record, age = held if held is not None else ({}, 0.0)
    # Launch's, and renewed: a launch SIGKILLed stops renewing, and its learner (told to
    # stop, committing meanwhile) must not write beside the next holder.
    if record.get("token") != self._token or age > record.get("ttl_s", 60):
      raise RunDirError(f"lost the lease of {self._run.url}; the commit was not sealed")


@contextlib.contextmanager
def writing_view(url: str, wanted: Callable[[str], bool]) -> Iterator[str]:
  """Yields a temporary directory holding the side files that `wanted` accepts, every
  bundle's marker and agent checkpoint, with the run's lease held; the side files the
  command writes or deletes there are uploaded or deleted at the end."""
  run = remote_run(url)
  view = tempfile.mkdtemp(prefix="trainer-gs-")
  try:
    with Lease(run.bucket, run.name(LEASE_FILE), run.url, progress=dict) as lease:
      _, side = transfer.pull_view(run, view, agents=True, wanted=wanted)
      mirror = Mirror(run, view, lease=lease, known=side)
      yield view
      mirror.sync()
      mirror.close()
  finally:
    shutil.rmtree(view, ignore_errors=True)


@contextlib.contextmanager
def reading_view(url: str, wanted: Callable[[str], bool]) -> Iterator["View"]:
  """Yields a `View` of the run: a temporary directory with the side files that `wanted`
  accepts and every bundle's marker."""
  run = remote_run(url)
  directory = tempfile.mkdtemp(prefix="trainer-gs-")
  try:
    listing, _ = transfer.pull_view(run, directory, wanted=wanted)
    yield View(run, directory, listing)
  finally:
    shutil.rmtree(directory, ignore_errors=True)


class View:
  """What a reading command sees of a gs:// run: `path` (a local directory of its files)
  and the bucket's listing, against which bundles are verified."""

  def __init__(self, run: RemoteRun, path: str, listing: dict):
    self.run, self.path, self.listing = run, path, listing

  def file_problem(self, rel: str, expected: dict) -> str | None:
    obj = self.listing.get(rel)
    if obj is None:
      return "is missing"
    if obj.size != expected["size"]:
      return f"has {obj.size} bytes, expected {expected['size']}"
    return None

  def lease(self) -> tuple[dict, float] | None:
    from trainer.storage import lease
    return lease.read(self.run.bucket, self.run.name(LEASE_FILE))

  def publish(self, path: str) -> str:
    """Uploads a file the command wrote into the view; returns its gs:// name."""
    rel = os.path.relpath(path, self.path).replace(os.sep, "/")
    self.run.bucket.upload(path, self.run.name(rel))
    return f"{self.run.url}/{rel}"


def no_run_reason(run_listing: dict) -> str | None:
  if layout.CONFIG_FILE in run_listing or any(rel.startswith(layout.BUNDLE_DIR + "/")
                                              for rel in run_listing):
    return None
  return "no objects there" if not run_listing else f"it holds no {layout.CONFIG_FILE}"


# --- sweeps: the sweep's own files staged, its members gs:// runs of their own ------------

SWEEP_LEASE = "sweep.lease"
MEMBERS = "members/"


@contextlib.contextmanager
def staged_sweep(url: str) -> Iterator[tuple[str, Callable[[], None]]]:
  """trainer.sweep's runner on gs://: its lease (one runner a sweep), the sweep's files
  (definition, outcomes, logs, report; not the members, which are runs of their own) in a
  staging directory; yields (it, `publish`: uploads what changed there)."""
  run = remote_run(url)
  staging = urls.staging_dir(url)
  with Lease(run.bucket, run.name(SWEEP_LEASE), run.url, progress=dict):
    shutil.rmtree(staging, ignore_errors=True)
    side = transfer.pull_side_files(run, run.listing(), staging,
                                    lambda rel: not rel.startswith(MEMBERS))
    mirror = Mirror(run, staging, known=side)
    try:
      yield staging, mirror.sync
    finally:
      mirror.close()


def pull_sweep_files(url: str, directory: str) -> Callable[[str], None]:
  """The sweep's own files into `directory` (what --member and --prepare read); returns
  `create(rel)`: uploads a file written there if the bucket has none yet (array tasks
  starting together write the same definition: the first one's stays)."""
  run = remote_run(url)
  transfer.pull_side_files(run, run.listing(), directory,
                           lambda rel: not rel.startswith(MEMBERS))

  def create(rel: str) -> None:
    with open(os.path.join(directory, rel), "rb") as f:
      try:
        run.bucket.write(run.name(rel), f.read(), if_generation_match=0)
      except Conflict:
        pass
  return create


@contextlib.contextmanager
def sweep_view(url: str) -> Iterator[View]:
  """trainer.report's: the sweep's files, and of each member its markers and evaluations."""
  run = remote_run(url)
  directory = tempfile.mkdtemp(prefix="trainer-gs-")
  try:
    listing = run.listing()
    for rel in sorted(listing):
      member_file = rel.startswith(MEMBERS) and (
          rel.endswith("/" + layout.EVAL_RETURNS_FILE) or rel.endswith("/" + layout.COMMIT_MARKER))
      if member_file or (not rel.startswith(MEMBERS) and remote_is_sweep_file(rel)):
        transfer.download_if_there(run, rel, directory)
    yield View(run, directory, listing)
  finally:
    shutil.rmtree(directory, ignore_errors=True)


def remote_is_sweep_file(rel: str) -> bool:
  return rel.endswith(".json")


def member_holder(url: str) -> str | None:
  """Who holds a member's gs:// run directory (its lease, renewed within its TTL), or None."""
  from trainer.storage import lease

  run = RemoteRun(url)
  held = lease.read(run.bucket, run.name(LEASE_FILE))
  if held is None or held[1] > held[0].get("ttl_s", 60):
    return None
  return lease.describe(held[0])
