"""Uploads: a job's staging directory into its gs:// run directory, as it commits.

After each local commit (`rundir.hooks`) one worker thread uploads, in this order:
1. the side files that changed (exports, evaluations, summaries, the config), the
   export pointers (index.json, LATEST, BEST) last, as read before the exports were
   listed, so a pointer never names an export not yet uploaded;
2. the bundle's own objects and the shared segments the bucket does not hold yet (a
   segment is immutable: uploaded once, whatever number of bundles refer to it);
3. a read of the lease (still ours), then the marker: the commit point;
4. `last_commit.json`, TensorFlow's `checkpoint` state file, and retention (markers
   first, then objects, then segments no marker refers to).
The loop goes on while it uploads; the next commit waits for it (retention may delete
the files it reads), and so does the job's exit, so a job that exits 75 has sealed its
last bundle in the bucket.
"""

import concurrent.futures
import os
import time

from absl import logging

from trainer.rundir import hooks, layout
from trainer.storage import remote
from trainer.storage.lease import Lease
from trainer.storage.remote import RemoteRun


class Mirror(hooks.CommitHooks):
  """Keeps `run` up to date with the staging directory `staging`.

  `known`: the side files already in the bucket as they are in staging ({rel: (size,
  mtime_ns)}), e.g. those just pulled. `shared`: the shared objects in the bucket
  ({rel: size}).
  """

  def __init__(self, run: RemoteRun, staging: str, *, lease: Lease | None = None,
               known: dict[str, tuple] | None = None, shared: dict[str, int] | None = None):
    self._run, self._staging, self._lease = run, staging, lease
    self._known = dict(known or {})
    self._shared = dict(shared or {})
    self._manifests: dict[int, dict] = {}
    self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="upload")
    self._pending: concurrent.futures.Future | None = None
    self.uploads: list[dict] = []  # one record per sealed bundle: what it cost

  # --- the bundle store's hooks --------------------------------------------------------

  def before(self) -> None:
    self.wait()

  def after(self, bundle, keep: int) -> None:
    self.wait()
    self._pending = self._worker.submit(self._seal, bundle, keep)

  def wait(self) -> None:
    """Waits for the upload in flight; raises its error."""
    pending, self._pending = self._pending, None
    if pending is not None:
      pending.result()

  def close(self) -> None:
    """Waits for the last bundle's upload, then uploads what changed since."""
    try:
      self.wait()
      self.sync()
      self._upload_if_changed(remote.TF_STATE)
    finally:
      self._worker.shutdown()

  # --- one commit ----------------------------------------------------------------------

  def _seal(self, bundle, keep: int) -> None:
    start = time.monotonic()
    if self._lease is not None:
      self._lease.check()  # a job that lost the lease writes nothing more
    side_bytes = self.sync()
    own_bytes, shared_bytes, files = self._upload_bundle(bundle.manifest)
    if self._lease is not None:
      self._lease.check()  # fencing: a job that lost the lease seals nothing
    self._put(os.path.join(bundle.path, layout.COMMIT_MARKER), remote.marker_rel(bundle.step))
    self._manifests[bundle.step] = bundle.manifest
    self._put(os.path.join(self._staging, layout.LAST_COMMIT_FILE), layout.LAST_COMMIT_FILE)
    self._upload_if_changed(remote.TF_STATE)
    self._prune(keep)
    record = {"step": bundle.step, "bundle_bytes": own_bytes, "shared_bytes": shared_bytes,
              "side_bytes": side_bytes, "files": files,
              "seconds": round(time.monotonic() - start, 3)}
    self.uploads.append(record)
    logging.info("Sealed bundle %d in %s: uploaded %.2f MiB of it (%.2f MiB of new shared "
                 "segments) and %.2f MiB of other files in %.2f s.", bundle.step, self._run.url,
                 (own_bytes + shared_bytes) / 2**20, shared_bytes / 2**20, side_bytes / 2**20,
                 record["seconds"])

  def _upload_bundle(self, manifest: dict) -> tuple[int, int, int]:
    own = shared = files = 0
    for rel, entry in sorted(manifest["files"].items()):
      if rel.endswith("/" + layout.COMMIT_MARKER):
        continue  # never part of its own manifest; listed for safety
      is_shared = rel.startswith(layout.SHARED_DIR + "/")
      if is_shared and self._shared.get(rel) == entry["size"]:
        continue
      self._put(os.path.join(self._staging, rel), rel)
      files += 1
      if is_shared:
        self._shared[rel] = entry["size"]
        shared += entry["size"]
      else:
        own += entry["size"]
    return own, shared, files

  def _prune(self, keep: int) -> None:
    listing = self._run.listing()
    steps = self._run.marker_steps(listing)
    for step in steps[:-keep]:
      self._run.delete_bundle(step, listing)
      self._manifests.pop(step, None)
    marked = {}
    for step in steps[-keep:]:
      if step not in self._manifests:
        self._manifests[step] = self._run.manifest(step)[0]
      marked[step] = self._manifests[step]
    self._run.delete_unreferenced(listing, marked, set_aside_too=True)
    referenced = {rel for m in marked.values() for rel in m.get("shared", [])}
    self._shared = {rel: size for rel, size in self._shared.items() if rel in referenced}

  # --- the side files --------------------------------------------------------------------

  def sync(self) -> int:
    """Uploads the side files that changed, pointers last; deletes from the bucket those
    deleted here (retention of exports). Returns the bytes uploaded."""
    pointers = {rel: _read(os.path.join(self._staging, rel)) for rel in remote.POINTERS}
    present = set()
    for dirpath, dirnames, names in os.walk(self._staging):
      dirnames.sort()
      for name in sorted(names):
        rel = os.path.relpath(os.path.join(dirpath, name), self._staging).replace(os.sep, "/")
        if remote.is_side_file(rel) and rel not in pointers and rel != remote.TF_STATE:
          present.add(rel)
    sent = 0
    for rel in sorted(present, key=remote.upload_order):
      sent += self._upload_if_changed(rel)
    for rel, data in pointers.items():
      if data is not None and self._known.get(rel) != ("bytes", data):
        self._run.bucket.write(self._run.name(rel), data)
        self._known[rel] = ("bytes", data)
        sent += len(data)
    named = b" ".join(data for data in pointers.values() if data is not None)
    gone = set(self._known) - present - set(pointers) - {remote.TF_STATE}
    # An export's metadata goes first: a kill midway leaves one without it (not an export),
    # never one that looks whole but is not.
    for rel in sorted(gone, key=lambda rel: (-remote.upload_order(rel)[0], rel)):
      export = rel.split("/")[1].encode() if rel.startswith(layout.POLICY_DIR + "/") else None
      if export and export in named:
        continue  # the pointers just uploaded still name it: the next sync deletes it
      self._run.bucket.delete(self._run.name(rel))
      del self._known[rel]
    return sent

  def _upload_if_changed(self, rel: str) -> int:
    path = os.path.join(self._staging, rel)
    try:
      stat = os.stat(path)
      signature = (stat.st_size, stat.st_mtime_ns)
      if self._known.get(rel) == signature:
        return 0
      self._put(path, rel)
    except FileNotFoundError:
      return 0  # deleted meanwhile (an export's retention): the next sync deletes it
    self._known[rel] = signature
    return stat.st_size

  def _put(self, path: str, rel: str) -> None:
    self._run.bucket.upload(path, self._run.name(rel))


def _read(path: str) -> bytes | None:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError:
    return None
