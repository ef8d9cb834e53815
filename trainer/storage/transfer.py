"""Downloads: what of a gs:// run directory a command needs, into a local directory.

`pull_for_resume` is the job's: the newest bundle whose marker verifies (every file's
size in the listing, then its SHA-256 once downloaded), falling back past damaged ones
(set aside in the bucket), plus the run's other files (config, exports, evaluations). The
bundle arrives as a local commit does: its files into a hidden directory, renamed into
place, so the local store sees a committed bundle or none. Shared segments already in the
staging directory (a restart on the same machine) are reused when their checksum agrees.

`pull_view` is the other commands': the files they read, no replay.
"""

import os
import shutil
import time
from collections.abc import Callable

from absl import logging

from trainer.checkpoint import bundle_store
from trainer.errors import RunDirError
from trainer.rundir import fileio, layout, run_lock
from trainer.storage import remote, urls
from trainer.storage.gcs import Object
from trainer.storage.remote import RemoteRun


def download(run: RemoteRun, rel: str, local_dir: str, target: str | None = None) -> str:
  path = os.path.join(local_dir, target or rel)
  run.bucket.download(run.name(rel), path)
  return path


def download_if_there(run: RemoteRun, rel: str, local_dir: str) -> str | None:
  """`download`, or None if the object went since the listing (a live job's retention)."""
  try:
    return download(run, rel, local_dir)
  except FileNotFoundError:
    return None


def pull_side_files(run: RemoteRun, listing: dict[str, Object], local_dir: str,
                    wanted: Callable[[str], bool] = lambda rel: True) -> dict[str, tuple]:
  """Downloads the run's files that are not a bundle's (event files excepted: a job
  writes new ones); returns {rel: (size, mtime_ns)} of what it wrote, for the mirror."""
  pulled = {}
  partial = tuple(remote.partial_exports(listing))  # an upload cut short: not an export
  for rel in sorted(listing):
    if partial and rel.startswith(partial):
      continue
    if remote.is_side_file(rel) and not remote.is_event_file(rel) and wanted(rel):
      path = download_if_there(run, rel, local_dir)
      if path is not None:
        pulled[rel] = _signature(path)
  if layout.LAST_COMMIT_FILE in listing and wanted(layout.LAST_COMMIT_FILE):
    download_if_there(run, layout.LAST_COMMIT_FILE, local_dir)
  return pulled


def _signature(path: str) -> tuple[int, int]:
  stat = os.stat(path)
  return stat.st_size, stat.st_mtime_ns


def pull_for_resume(run: RemoteRun, staging: str) -> tuple[int | None, dict[str, tuple]]:
  """Fills `staging` (emptied first, shared segments kept) with the newest verified
  bundle and the side files; sets damaged bundles aside and deletes leftovers of
  interrupted uploads (the caller holds the lease). Returns (its step, the side files)."""
  _wait_until_unused(staging)
  try:
    _empty_except_shared(staging)
  except OSError as e:
    raise RunDirError(f"cannot use the staging directory {staging} ({e.strerror}); set "
                      f"{urls.STAGING_ENV} to a writable directory on a local disk") from e
  listing = run.listing()
  side = pull_side_files(run, listing, staging)
  manifests = run.manifests(listing)
  chosen = None
  for step in sorted(manifests, reverse=True):
    manifest, problem = manifests[step]
    problem = problem or remote.size_problem(listing, manifest) or _pull_bundle(
        run, staging, step, manifest)
    if problem is None:
      chosen = step
      break
    logging.error("Checkpoint bundle %d in %s is damaged (%s); falling back to an older one.",
                  step, run.url, problem)
    run.set_aside(step, listing)
    listing = run.listing()
  run.delete_leftovers(listing, {s: m for s, (m, p) in manifests.items() if p is None})
  partial = tuple(remote.partial_exports(listing))
  for rel in listing:
    if partial and rel.startswith(partial):
      run.bucket.delete(run.name(rel))  # the job writes that export again
  return chosen, side


# How long a new job waits for a job of this machine that still holds the staging directory
# (a learner told to stop when its launch was killed, committing its last bundle).
STAGING_WAIT_S = 120.0


def _wait_until_unused(staging: str) -> None:
  """Waits for this machine's processes that hold the staging directory's locks to exit:
  emptying it under them would mix two jobs (their lease is gone, their writes are fenced)."""
  for name in (layout.LOCK_FILE, layout.LAUNCH_LOCK_FILE, layout.SERVER_LOCK_FILE):
    path = os.path.join(staging, name)
    deadline = time.monotonic() + STAGING_WAIT_S
    if run_lock.held(path):
      logging.warning("The staging directory %s is held by %s; waiting for it to exit.",
                      staging, run_lock.describe_holder(path))
    while run_lock.held(path):
      if time.monotonic() > deadline:
        raise RunDirError(f"the staging directory {staging} is still held by "
                          f"{run_lock.describe_holder(path)}, a process of this machine; stop "
                          "it, then rerun")
      time.sleep(0.5)


def _empty_except_shared(staging: str) -> None:
  os.makedirs(staging, exist_ok=True)
  for name in os.listdir(staging):
    path = os.path.join(staging, name)
    if name == layout.TRAIN_DIR:
      for inner in os.listdir(path):
        if os.path.join(layout.TRAIN_DIR, inner) != layout.SHARED_DIR:
          _remove(os.path.join(path, inner))
    else:
      _remove(path)


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  else:
    os.remove(path)


def _pull_bundle(run: RemoteRun, staging: str, step: int, manifest: dict) -> str | None:
  """Downloads bundle `step` and checks every file's SHA-256; None, or what is wrong
  (nothing of it is then left as committed)."""
  final = os.path.join(staging, layout.BUNDLE_DIR, layout.step_name(step))
  hidden = os.path.join(staging, layout.BUNDLE_DIR,
                        bundle_store.HIDDEN_PREFIX + layout.step_name(step))
  own_prefix = f"{layout.BUNDLE_DIR}/{layout.step_name(step)}/"
  _remove_if_there(hidden)
  for rel, entry in sorted(manifest["files"].items()):
    target = rel.replace(own_prefix, os.path.relpath(hidden, staging) + "/", 1)
    path = os.path.join(staging, target)
    if rel.startswith(layout.SHARED_DIR + "/") and os.path.isfile(path) and \
        bundle_store.file_problem_at(path, entry) is None:
      continue  # a segment this machine staged before, intact
    download(run, rel, staging, target)
    problem = bundle_store.file_problem_at(path, entry)
    if problem is not None:
      _remove_if_there(hidden)
      return f"{rel} {problem} once downloaded"
  download(run, remote.marker_rel(step), staging,
           os.path.join(os.path.relpath(hidden, staging), layout.COMMIT_MARKER))
  os.rename(hidden, final)  # the local commit point, as the store's own
  return None


def _remove_if_there(path: str) -> None:
  if os.path.lexists(path):
    _remove(path)


def pull_view(run: RemoteRun, view: str, *, markers: bool = True, agents: bool = False,
              wanted: Callable[[str], bool] = lambda rel: True
              ) -> tuple[dict[str, Object], dict[str, tuple]]:
  """Downloads into `view` the side files that `wanted` accepts, every bundle's marker
  (as `<N>/COMMITTED`, a bundle without its replay) and with `agents` each bundle's agent
  checkpoint: what status, export, evaluate and plot read. Returns (the listing, the
  side files pulled)."""
  listing = run.listing()
  side = pull_side_files(run, listing, view, wanted)
  if markers:
    for step in run.marker_steps(listing):  # a live job's retention may delete some meanwhile
      download_if_there(run, remote.marker_rel(step), view)
      if agents:
        prefix = layout.agent_checkpoint_prefix("", step).lstrip("/")
        for rel in listing:
          if rel.startswith(prefix + "."):
            download_if_there(run, rel, view)
  fileio.remove_stale_temporaries(view)
  return listing, side
