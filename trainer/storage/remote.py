"""A run directory in a bucket: its objects, its committed bundles, and their upkeep.

The objects have the names of the files of a local run directory (`<prefix>/<path>`), and
the commit protocol is the local one without the rename (docs/object_storage.md): bundle
N's objects are uploaded first (`train/bundles/<N>/...`, `train/checkpoints/ckpt-N.*`,
new shared segments), then its marker `train/bundles/<N>/COMMITTED` (the manifest, the
same bytes as the local one), written last, as a single object: a bundle is committed
once its marker exists. Objects of a step without a marker are an interrupted upload, not
damage: the next holder of the lease deletes them. Retention deletes a bundle's marker
first. A damaged bundle (a marker that does not verify) is set aside as
`train/bundles/<N>.damaged-<time>/`, every object kept.
"""

import datetime
import json
import re

from absl import logging

from trainer.checkpoint.bundle_store import DAMAGED_SUFFIX, manifest_problem
from trainer.rundir import layout
from trainer.storage import urls
from trainer.storage.gcs import Bucket, Object

BUNDLES = layout.BUNDLE_DIR + "/"
_MARKER = re.compile(rf"{re.escape(BUNDLES)}(\d{{{layout.STEP_DIGITS}}})/{layout.COMMIT_MARKER}")
_BUNDLE_OBJECT = re.compile(rf"{re.escape(BUNDLES)}(\d{{{layout.STEP_DIGITS}}})/")
_AGENT_OBJECT = re.compile(rf"{re.escape(layout.CHECKPOINT_DIR)}/ckpt-(\d+)\.")


class RemoteRun:
  """The run directory at `url` (gs://bucket/prefix)."""

  def __init__(self, url: str, bucket: Bucket | None = None):
    self.url = urls.canonical(url)
    bucket_name, self.prefix = urls.split(url)
    self.bucket = bucket or Bucket(bucket_name)

  def name(self, rel: str) -> str:
    return urls.object_name(self.prefix, rel)

  def listing(self) -> dict[str, Object]:
    """Every object of the run, by its path from the run directory."""
    cut = len(self.prefix) + 1
    return {name[cut:]: obj for name, obj in self.bucket.list(self.prefix + "/").items()}

  def read_json(self, rel: str):
    return json.loads(self.bucket.read(self.name(rel))[0])

  # --- committed bundles --------------------------------------------------------

  def marker_steps(self, listing: dict[str, Object]) -> list[int]:
    return sorted(int(m.group(1)) for rel in listing if (m := _MARKER.fullmatch(rel)))

  def manifest(self, step: int) -> tuple[dict, str | None]:
    """(bundle `step`'s manifest, None) or ({}, why its marker cannot be trusted)."""
    try:
      manifest = self.read_json(marker_rel(step))
    except FileNotFoundError:
      return {}, "its commit marker is missing"
    except ValueError as e:
      return {}, f"its commit marker is unreadable ({e})"
    problem = manifest_problem(manifest, step)
    return (manifest, None) if problem is None else ({}, problem)

  def manifests(self, listing: dict[str, Object]) -> dict[int, tuple[dict, str | None]]:
    return {step: self.manifest(step) for step in self.marker_steps(listing)}

  def progress(self) -> tuple[int, int | None]:
    """(train step, total) of the newest bundle whose marker reads ((0, None): none), as
    the sweep runner asks of a member; the objects are not verified."""
    for step in reversed(self.marker_steps(self.listing())):
      manifest, problem = self.manifest(step)
      if problem is None:
        return manifest["summary"].get("train_step", 0), manifest["summary"].get("num_iterations")
    return 0, None

  # --- upkeep, by the holder of the lease -------------------------------------------

  def set_aside(self, step: int, listing: dict[str, Object]) -> None:
    """Moves a damaged bundle's objects to `train/bundles/<N>.damaged-<time>/` (copies, then
    the marker deleted first): it no longer counts, and nothing of it is lost."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    target = f"{BUNDLES}{layout.step_name(step)}{DAMAGED_SUFFIX}{stamp}/"
    own = [rel for rel in listing if _step_of(rel) == step]
    for rel in own:
      self.bucket.copy(self.name(rel), self.name(target + rel.rsplit("/", 1)[-1]
                                                 if rel.startswith(layout.CHECKPOINT_DIR)
                                                 else target + rel.split("/", 3)[3]))
    self.bucket.delete(self.name(marker_rel(step)))
    for rel in own:
      self.bucket.delete(self.name(rel))
    logging.warning("Moved damaged bundle %d aside to %s/%s (every object kept).", step,
                    self.url, target)

  def delete_bundle(self, step: int, listing: dict[str, Object]) -> None:
    """Retention: the marker first (the bundle stops counting at once), then its own
    objects; shared ones go in `delete_unreferenced`."""
    self.bucket.delete(self.name(marker_rel(step)))
    for rel in listing:
      if _step_of(rel) == step:
        self.bucket.delete(self.name(rel))

  def delete_leftovers(self, listing: dict[str, Object], marked: dict[int, dict]) -> None:
    """Deletes what interrupted uploads and deletions left: objects of steps without a
    marker (a step with one, even one that does not verify, keeps every object), and shared
    objects that no marker refers to (markers of damaged bundles, set aside, included)."""
    with_marker = set(self.marker_steps(listing))
    for rel in listing:
      step = _step_of(rel)
      if step is not None and step not in with_marker:
        logging.info("Removing %s/%s, left by an interrupted upload.", self.url, rel)
        self.bucket.delete(self.name(rel))
    self.delete_unreferenced(listing, marked, set_aside_too=True)

  def delete_unreferenced(self, listing: dict[str, Object], marked: dict[int, dict], *,
                          set_aside_too: bool = False) -> None:
    referenced = {rel for manifest in marked.values() for rel in manifest.get("shared", [])}
    if set_aside_too:
      for rel in listing:
        if DAMAGED_SUFFIX in rel and rel.endswith("/" + layout.COMMIT_MARKER):
          try:
            referenced.update(self.read_json(rel).get("shared", []))
          except (FileNotFoundError, ValueError, AttributeError):
            pass
    for rel in listing:
      if rel.startswith(layout.SHARED_DIR + "/") and rel not in referenced:
        self.bucket.delete(self.name(rel))


def marker_rel(step: int) -> str:
  return f"{BUNDLES}{layout.step_name(step)}/{layout.COMMIT_MARKER}"


def _step_of(rel: str) -> int | None:
  """The step whose bundle owns the object `rel` (its directory or its agent checkpoint)."""
  m = _BUNDLE_OBJECT.match(rel) or _AGENT_OBJECT.match(rel)
  return int(m.group(1)) if m else None


def size_problem(listing: dict[str, Object], manifest: dict) -> str | None:
  """None if every file of the manifest is an object of its size, else the first that is
  not (the bucket checked each upload's CRC32C; the SHA-256 is checked at download)."""
  for rel, entry in sorted(manifest["files"].items()):
    obj = listing.get(rel)
    if obj is None:
      return f"{rel} is missing"
    if obj.size != entry["size"]:
      return f"{rel} has {obj.size} bytes, expected {entry['size']}"
  return None


# What of a run directory is not a bundle's: uploaded as it changes (`mirror`), pulled at
# a resume. Locks, the roles' meeting files (the job's key among them) and scratch stay local.
_LOCAL_ONLY = (layout.LOCK_FILE, layout.LAUNCH_LOCK_FILE, layout.LAST_COMMIT_FILE, "sweep.lock",
               layout.ROLES_DIR + "/", layout.BUNDLE_DIR + "/", layout.SHARED_DIR + "/",
               layout.REVERB_SCRATCH_DIR + "/", layout.REVERB_SERVER_DIR + "/",
               layout.LEARNER_DIR + "/", layout.CHECKPOINT_DIR + "/ckpt-")
_TEMPORARY = re.compile(r"(^|/)\.|\.tmp-\d+$")
# Written last by a sync: they name exports, which must be there first.
POINTERS = tuple(f"{layout.POLICY_DIR}/{name}" for name in
                 (layout.EXPORT_INDEX, layout.LATEST_POINTER, layout.BEST_POINTER))
TF_STATE = f"{layout.CHECKPOINT_DIR}/checkpoint"  # names the latest bundle: after its marker


_EXPORT_FILE = re.compile(rf"{layout.POLICY_DIR}/(\d{{{layout.STEP_DIGITS}}})/(.+)")


def upload_order(rel: str) -> tuple:
  """Sorts a sync's uploads: an export's `metadata.json` after its other files (and its
  deletions the other way round). A bucket has no rename: the metadata object is what makes an
  export whole (`policy_index.list_exports` reads it), so an upload or a deletion killed midway
  leaves an export without one, never a partial one with one."""
  m = _EXPORT_FILE.fullmatch(rel)
  return (1, rel) if m and m.group(2) == layout.EXPORT_METADATA else (0, rel)


def partial_exports(listing: dict[str, Object]) -> set[str]:
  """The `policies/<step>/` prefixes of exports whose upload was cut short (no metadata)."""
  steps = {m.group(1) for rel in listing if (m := _EXPORT_FILE.fullmatch(rel))}
  return {f"{layout.POLICY_DIR}/{step}/" for step in steps
          if f"{layout.POLICY_DIR}/{step}/{layout.EXPORT_METADATA}" not in listing}


def is_side_file(rel: str) -> bool:
  return not (rel.startswith(_LOCAL_ONLY) or _TEMPORARY.search(rel) or rel.endswith(".lease"))


def is_event_file(rel: str) -> bool:
  return ".tfevents." in rel.rsplit("/", 1)[-1]
