"""Checkpoint bundles: one consistent snapshot of a run at one train step.

A bundle N is the agent checkpoint `train/checkpoints/ckpt-N.*` plus the
directory `train/bundles/<N>/` (replay, counters, metrics, RNG, config). The
commit protocol makes a crash at any instant leave the previous bundle or the
new one, never a mix:

1. the parts are written (an unfinished bundle directory has no marker);
2. `COMMITTED` is written atomically, last. It is the manifest: every file of
   the bundle with its size and SHA-256, so a bundle can be verified later;
3. TensorFlow's `checkpoint` state file is pointed at `ckpt-N`, so
   `tf.train.latest_checkpoint(DIR/train/checkpoints)` names the latest
   *committed* agent checkpoint, as TF-Agents users expect.

"Latest" always means the newest bundle with a marker. Unmarked leftovers of
a crash are deleted when the next job takes the run directory.
"""

import dataclasses
import datetime
import glob
import os
import shutil
from typing import Any

from absl import logging

from trainer import fileio, layout
from trainer.errors import RunDirError

MANIFEST_FORMAT = 1
DAMAGED_SUFFIX = ".damaged-"  # Damaged bundles set aside; never deleted by the store.
TF_STATE_FILE = "checkpoint"  # TensorFlow's name for a checkpoint directory's state file.


@dataclasses.dataclass(frozen=True)
class Bundle:
  """A committed bundle."""

  step: int
  path: str
  manifest: dict

  @property
  def replay_dir(self) -> str:
    return os.path.join(self.path, layout.REPLAY_SUBDIR)

  @property
  def state_ckpt_prefix(self) -> str:
    return os.path.join(self.path, layout.STATE_CKPT_DIR, "state")

  def state(self) -> dict:
    """The bundle's `state.json`: counters, evals, RNG."""
    return fileio.read_json(os.path.join(self.path, layout.STATE_JSON))


class BundleStore:
  """Writes, lists, verifies and prunes the bundles of one run directory."""

  def __init__(self, root_dir: str, *, keep: int = 3):
    self._root = root_dir
    self._keep = keep
    self._bundle_root = os.path.join(root_dir, layout.BUNDLE_DIR)
    self._ckpt_dir = os.path.join(root_dir, layout.CHECKPOINT_DIR)

  def committed(self) -> list[Bundle]:
    """Committed bundles, oldest first (not verified; see `verify`)."""
    bundles = []
    for path in sorted(glob.glob(os.path.join(self._bundle_root, "[0-9]" * layout.STEP_DIGITS))):
      marker = os.path.join(path, layout.COMMIT_MARKER)
      if not os.path.isfile(marker):
        continue
      try:
        manifest = fileio.read_json(marker)
      except (OSError, ValueError) as e:
        logging.warning("Bundle %s has an unreadable commit marker (%s); ignoring it.", path, e)
        continue
      bundles.append(Bundle(step=int(os.path.basename(path)), path=path, manifest=manifest))
    return bundles

  def latest(self) -> Bundle | None:
    bundles = self.committed()
    return bundles[-1] if bundles else None

  def verify(self, bundle: Bundle) -> str | None:
    """None if every file of `bundle` is present and intact, else the reason."""
    for rel, expected in sorted(bundle.manifest.get("files", {}).items()):
      path = os.path.join(self._root, rel)
      if not os.path.isfile(path):
        return f"{rel} is missing"
      size = os.path.getsize(path)
      if size != expected["size"]:
        return f"{rel} has {size} bytes, expected {expected['size']}"
      if fileio.sha256_file(path) != expected["sha256"]:
        return f"{rel} fails its checksum"
    return None

  def latest_valid(self) -> Bundle | None:
    """The newest bundle that verifies, falling back past damaged ones.

    Raises:
      RunDirError: bundles were committed but none verifies. Starting afresh
        over them would silently discard the run.
    """
    bundles = self.committed()
    damaged = []
    for bundle in reversed(bundles):
      problem = self.verify(bundle)
      if problem is None:
        for bad in damaged:
          self._set_aside(bad)
        return bundle
      logging.error("Checkpoint bundle %d is damaged (%s); falling back to an older one.",
                    bundle.step, problem)
      damaged.append(bundle)
    if bundles:
      raise RunDirError(
          f"no checkpoint bundle in {self._bundle_root} verifies (steps "
          f"{[b.step for b in bundles]} are all damaged); restore the directory "
          "from a backup or start a new --root_dir")
    return None

  def _set_aside(self, bundle: Bundle) -> None:
    """Moves a damaged bundle out of the way, keeping its files for inspection.

    It becomes `bundles/<N>.damaged-<time>/` (its agent checkpoint moved inside),
    which no longer counts as committed, so training past step N commits anew.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    for path in glob.glob(layout.agent_checkpoint_prefix(self._root, bundle.step) + ".*"):
      os.replace(path, os.path.join(bundle.path, os.path.basename(path)))
    target = f"{bundle.path}{DAMAGED_SUFFIX}{stamp}"
    os.rename(bundle.path, target)
    logging.warning("Moved damaged bundle %d aside to %s.", bundle.step, target)

  def clean_partial(self) -> None:
    """Deletes unmarked bundle directories and agent checkpoints of no bundle."""
    committed_steps = {b.step for b in self.committed()}
    for path in glob.glob(os.path.join(self._bundle_root, "*")):
      name = os.path.basename(path)
      if DAMAGED_SUFFIX in name:
        continue
      if not (name.isdigit() and int(name) in committed_steps):
        logging.info("Removing unfinished bundle %s left by an interrupted job.", path)
        _remove(path)
    for path in glob.glob(os.path.join(self._ckpt_dir, "ckpt-*")):
      step_text = os.path.basename(path)[len("ckpt-"):].split(".")[0]
      if not step_text.isdigit() or int(step_text) not in committed_steps:
        _remove(path)

  def begin(self, step: int) -> str:
    """A fresh, empty directory for bundle `step`'s parts."""
    path = os.path.join(self._bundle_root, layout.step_name(step))
    _remove(path)
    os.makedirs(path)
    os.makedirs(self._ckpt_dir, exist_ok=True)
    return path

  def abandon(self, step: int) -> None:
    """Removes the parts of an uncommitted bundle `step` (after a failed write)."""
    path = os.path.join(self._bundle_root, layout.step_name(step))
    if os.path.isfile(os.path.join(path, layout.COMMIT_MARKER)):
      return  # Committed: the failure came after the commit point; keep it.
    _remove(path)
    for ckpt in glob.glob(layout.agent_checkpoint_prefix(self._root, step) + ".*"):
      _remove(ckpt)

  def commit(self, step: int, summary: dict[str, Any]) -> Bundle:
    """Seals bundle `step`: manifest and marker, TF state file, retention."""
    path = os.path.join(self._bundle_root, layout.step_name(step))
    files = {}
    part_files = glob.glob(layout.agent_checkpoint_prefix(self._root, step) + ".*")
    if not part_files:
      raise RunDirError(f"agent checkpoint for step {step} is missing; cannot commit")
    for dirpath, _, names in os.walk(path):
      part_files.extend(os.path.join(dirpath, n) for n in names)
    for file_path in sorted(part_files):
      fileio.fsync(file_path)
      files[os.path.relpath(file_path, self._root)] = {
          "size": os.path.getsize(file_path), "sha256": fileio.sha256_file(file_path)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "committed_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "summary": summary,
        "files": files,
    }
    fileio.atomic_write_json(os.path.join(path, layout.COMMIT_MARKER), manifest)
    bundle = Bundle(step=step, path=path, manifest=manifest)
    self._prune()
    return bundle

  def point_tf_state_at(self, step: int) -> None:
    """Makes `tf.train.latest_checkpoint` name ckpt-`step` (and list the rest)."""
    steps = [b.step for b in self.committed() if b.step <= step]
    # TF's CheckpointState text proto; relative paths resolve against the dir.
    lines = [f'model_checkpoint_path: "ckpt-{step}"']
    lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
    fileio.atomic_write_text(os.path.join(self._ckpt_dir, TF_STATE_FILE), "\n".join(lines) + "\n")

  def _prune(self) -> None:
    bundles = self.committed()
    for bundle in bundles[:-self._keep]:
      self.delete(bundle)
    self.point_tf_state_at(bundles[-1].step)

  def delete(self, bundle: Bundle) -> None:
    """Removes a bundle, marker first, so a crash midway leaves no committed half."""
    os.remove(os.path.join(bundle.path, layout.COMMIT_MARKER))
    for path in glob.glob(layout.agent_checkpoint_prefix(self._root, bundle.step) + ".*"):
      os.remove(path)
    shutil.rmtree(bundle.path, ignore_errors=True)


def _remove(path: str) -> None:
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.exists(path):
    os.remove(path)
