"""Checkpoint bundles: one consistent snapshot of a run at one train step.

A bundle N is the agent checkpoint `train/checkpoints/ckpt-N.*` plus the
directory `train/bundles/<N>/` (replay, counters, metrics, RNG, config). The
commit protocol makes a crash at any instant leave the previous bundle or the
new one, never a mix:

1. the parts are written: the agent checkpoint, and the rest into a hidden
   directory `train/bundles/.tmp-<N>/`;
2. `COMMITTED` is written into it: the manifest, every file of the bundle
   with its size and SHA-256, so a bundle can be verified later;
3. the directory is renamed to `<N>/`: the commit point. A numbered
   directory is therefore a committed bundle, and one without a readable
   manifest is damage, never an unfinished write;
4. `DIR/last_commit.json` records the step, so a run that has committed once
   is never mistaken for a new one, even if its bundles are lost;
5. TensorFlow's `checkpoint` state file is pointed at `ckpt-N`, so
   `tf.train.latest_checkpoint(DIR/train/checkpoints)` names the latest
   *committed* agent checkpoint, as TF-Agents users expect.

Parts may refer to immutable files under `train/shared/` (the frame replay's
segments, written once and shared by successive bundles): the manifest lists
them with the bundle's own files, so they are verified alike, and a shared
file is deleted only when no bundle refers to it any more (`shared_files`).

Damaged bundles are set aside as `<N>.damaged-<time>/` with every file kept;
the store never deletes them. Hidden `.tmp-*` leftovers of a crash are deleted
when the next job takes the run directory.
"""

import dataclasses
import datetime
import glob
import os
import shutil
from collections.abc import Callable
from typing import Any

from absl import logging

from trainer.checkpoint.shared_files import SharedFiles
from trainer.errors import RunDirError
from trainer.rundir import fileio, hooks, layout

MANIFEST_FORMAT = 1
DAMAGED_SUFFIX = ".damaged-"  # Damaged bundles set aside; never deleted by the store.
HIDDEN_PREFIX = ".tmp-"  # Bundles being written or deleted: never committed.
TF_STATE_FILE = "checkpoint"  # TensorFlow's name for a checkpoint directory's state file.


@dataclasses.dataclass(frozen=True)
class Bundle:
  """A bundle directory `<N>/`; `problem` says why its marker cannot be trusted."""

  step: int
  path: str
  manifest: dict
  problem: str | None = None

  @property
  def replay_dir(self) -> str:
    return os.path.join(self.path, layout.REPLAY_SUBDIR)

  @property
  def summary(self) -> dict[str, Any]:
    return self.manifest.get("summary", {}) if self.problem is None else {}

  def state(self) -> dict:
    """The bundle's `state.json`: counters, evals, RNG."""
    return fileio.read_json(os.path.join(self.path, layout.STATE_JSON))


def manifest_problem(manifest: Any, step: int) -> str | None:
  """None if `manifest` is a well-formed manifest of bundle `step`, else why not."""
  if not isinstance(manifest, dict):
    return f"its commit marker holds a {type(manifest).__name__}, not a manifest"
  files = manifest.get("files")
  if not isinstance(files, dict) or not files:
    return "its commit marker lists no files"
  for rel, entry in files.items():
    if not (isinstance(entry, dict) and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str)):
      return f"its commit marker's entry for {rel} is malformed"
  if manifest.get("step") != step:
    return f"its commit marker is for step {manifest.get('step')!r}"
  summary = manifest.get("summary")
  if not isinstance(summary, dict):
    return "its commit marker has no summary"
  if summary.get("train_step") != step:
    return "its commit marker's summary is for another step"
  for key in ("env_steps", "episodes", "replay_size", "num_iterations"):
    if key in summary and not _is_int(summary[key]):
      return f"its commit marker's summary has a malformed {key}"
  schedule = summary.get("export_schedule", [])
  if not (isinstance(schedule, list) and all(
      isinstance(seg, list) and len(seg) == 2 and all(_is_int(x) for x in seg)
      for seg in schedule)):
    return "its commit marker's summary has a malformed export_schedule"
  last_eval = summary.get("last_eval_return")
  if last_eval is not None and (isinstance(last_eval, bool)
                                or not isinstance(last_eval, (int, float))):
    return "its commit marker's summary has a malformed last_eval_return"
  return None


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


class BundleStore:
  """Writes, lists, verifies and prunes the bundles of one run directory."""

  def __init__(self, root_dir: str, *, keep: int = 3,
               file_problem: Callable[[str, dict], str | None] | None = None):
    """`file_problem(rel, manifest entry)`: how `verify` checks one file (default: the
    file under `root_dir`, size and SHA-256; a gs:// run's status checks the bucket)."""
    self.root_dir = root_dir
    self._keep = keep
    self._file_problem = file_problem or (
        lambda rel, expected: file_problem_at(os.path.join(root_dir, rel), expected))
    self._bundle_root = os.path.join(root_dir, layout.BUNDLE_DIR)
    self._ckpt_dir = os.path.join(root_dir, layout.CHECKPOINT_DIR)
    self.shared = SharedFiles(root_dir, self._bundle_root)

  # --- reading ---------------------------------------------------------------

  def committed(self) -> list[Bundle]:
    """Every committed bundle, oldest first, damaged markers included (their
    `problem` set); the files are not verified (see `verify`)."""
    bundles = []
    for path in sorted(glob.glob(os.path.join(self._bundle_root, "[0-9]" * layout.STEP_DIGITS))):
      step = int(os.path.basename(path))
      marker = os.path.join(path, layout.COMMIT_MARKER)
      try:
        manifest = fileio.read_json(marker)
      except FileNotFoundError:
        bundles.append(Bundle(step, path, {}, "its commit marker is missing"))
        continue
      except (OSError, ValueError) as e:
        bundles.append(Bundle(step, path, {}, f"its commit marker is unreadable ({e})"))
        continue
      problem = manifest_problem(manifest, step)
      bundles.append(Bundle(step, path, manifest if problem is None else {}, problem))
    return bundles

  def latest(self) -> Bundle | None:
    """The newest bundle whose marker is a manifest (files not verified)."""
    bundles = [b for b in self.committed() if b.problem is None]
    return bundles[-1] if bundles else None

  def last_commit_step(self) -> int | None:
    """The newest step this run directory ever committed, from `last_commit.json`.

    A journal that exists but cannot be read counts as "committed before":
    the caller must not treat the directory as new.
    """
    path = os.path.join(self.root_dir, layout.LAST_COMMIT_FILE)
    try:
      record = fileio.read_json(path)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return -1
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else -1

  def verify(self, bundle: Bundle) -> str | None:
    """None if every file of `bundle` is present and intact, else the reason."""
    if bundle.problem is not None:
      return bundle.problem
    for rel, expected in sorted(bundle.manifest["files"].items()):
      problem = self._file_problem(rel, expected)
      if problem is not None:
        return f"{rel} {problem}"
    return None

  def newest_verified(self, bundles: list[Bundle] | None = None
                      ) -> tuple[Bundle | None, list[tuple[Bundle, str]]]:
    """(the newest bundle that verifies, the damaged ones newer than it), read
    only; `bundles` is `committed()` when the caller has listed them already."""
    damaged = []
    for bundle in reversed(self.committed() if bundles is None else bundles):
      problem = self.verify(bundle)
      if problem is None:
        return bundle, damaged
      damaged.append((bundle, problem))
    return None, damaged

  # --- resuming (under the run's lock) ----------------------------------------

  def latest_valid(self) -> Bundle | None:
    """The newest bundle that verifies, falling back past damaged ones, which
    are set aside (`<N>.damaged-<time>/`, every file kept), and leftovers of
    interrupted writes removed: `resume_point` then `settle`."""
    bundle, damaged = self.resume_point()
    self.settle(damaged)
    return bundle

  def resume_point(self) -> tuple[Bundle | None, list[Bundle]]:
    """(the bundle to resume from, the damaged ones newer than it); changes nothing.

    Raises:
      RunDirError: the run directory committed before, but no bundle verifies
        now. Starting afresh over it would silently discard the run.
    """
    bundle, damaged = self.newest_verified()
    for bad, problem in damaged:
      logging.error("Checkpoint bundle %d is damaged (%s); falling back to an older one.",
                    bad.step, problem)
    last = self.last_commit_step()
    if bundle is None:
      if damaged:
        raise RunDirError(
            f"no checkpoint bundle in {self._bundle_root} verifies (steps "
            f"{sorted(b.step for b, _ in damaged)} are all damaged; nothing was changed); "
            "restore the directory from a backup, or start afresh with a new --root_dir")
      if last is not None:
        raise RunDirError(
            f"{self.root_dir} committed checkpoint bundle {last if last >= 0 else '(unknown)'} "
            f"before ({layout.LAST_COMMIT_FILE}) but holds no bundle now; restore "
            f"{self._bundle_root} from a backup, or start afresh with a new --root_dir "
            "(or delete the directory first)")
      return None, []
    if last is not None and last > bundle.step and not damaged:
      logging.error("Checkpoint bundle %d (the newest this run committed) is gone; resuming "
                    "from bundle %d.", last, bundle.step)
    return bundle, [bad for bad, _ in damaged]

  def settle(self, damaged: list[Bundle]) -> None:
    """Sets the damaged bundles aside and removes leftovers of interrupted writes
    (under the run's lock, once the job is known to start)."""
    for bad in damaged:
      self._set_aside(bad)
    self.clean_partial()

  def _set_aside(self, bundle: Bundle) -> None:
    """Moves a damaged bundle out of the way, keeping its files for inspection.

    It becomes `bundles/<N>.damaged-<time>/` (its agent checkpoint moved inside),
    which no longer counts as committed, so training past step N commits anew.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    target = f"{bundle.path}{DAMAGED_SUFFIX}{stamp}"
    for i in range(1, 1000):
      if not os.path.lexists(target):
        break
      target = f"{bundle.path}{DAMAGED_SUFFIX}{stamp}-{i}"
    if os.path.isdir(bundle.path) and not os.path.islink(bundle.path):
      os.rename(bundle.path, target)
    else:  # a file (or link) where the bundle directory should be: kept inside
      os.makedirs(target)
      os.rename(bundle.path, os.path.join(target, os.path.basename(bundle.path)))
    for path in glob.glob(layout.agent_checkpoint_prefix(self.root_dir, bundle.step) + ".*"):
      os.replace(path, os.path.join(target, os.path.basename(path)))
    logging.warning("Moved damaged bundle %d aside to %s (every file kept).", bundle.step, target)

  def clean_partial(self) -> None:
    """Deletes what interrupted writes left: hidden bundle directories, agent
    checkpoints of no bundle, and temporary files of atomic writes."""
    for path in glob.glob(os.path.join(self._bundle_root, HIDDEN_PREFIX + "*")):
      logging.info("Removing unfinished bundle %s left by an interrupted job.", path)
      _remove(path)
    steps = {b.step for b in self.committed()}
    for path in glob.glob(os.path.join(self._ckpt_dir, "ckpt-*")):
      step_text = os.path.basename(path)[len("ckpt-"):].split(".")[0]
      if not step_text.isdigit() or int(step_text) not in steps:
        _remove(path)
    for directory in (self.root_dir, self._ckpt_dir):
      fileio.remove_stale_temporaries(directory)
    self.shared.remove_orphans()

  # --- writing -----------------------------------------------------------------

  def _final_path(self, step: int) -> str:
    return os.path.join(self._bundle_root, layout.step_name(step))

  def _tmp_path(self, step: int) -> str:
    return os.path.join(self._bundle_root, HIDDEN_PREFIX + layout.step_name(step))

  def begin(self, step: int) -> str:
    """A fresh, empty (hidden) directory for bundle `step`'s parts."""
    if os.path.lexists(self._final_path(step)):
      raise RunDirError(f"bundle {self._final_path(step)} exists already; it is not "
                        "overwritten")
    path = self._tmp_path(step)
    _remove(path)
    os.makedirs(path)
    os.makedirs(self._ckpt_dir, exist_ok=True)
    return path

  def abandon(self, step: int) -> None:
    """Removes the parts of an uncommitted bundle `step` (after a failed write)."""
    if os.path.isdir(self._final_path(step)):
      return  # Committed: the failure came after the commit point; keep it.
    _remove(self._tmp_path(step))
    for ckpt in glob.glob(layout.agent_checkpoint_prefix(self.root_dir, step) + ".*"):
      _remove(ckpt)

  def commit(self, step: int, summary: dict[str, Any]) -> Bundle:
    """Seals bundle `step`: manifest, rename into place, journal, TF state, retention."""
    hooks.before_commit(self.root_dir)
    tmp, final = self._tmp_path(step), self._final_path(step)
    part_files = glob.glob(layout.agent_checkpoint_prefix(self.root_dir, step) + ".*")
    if not part_files:
      raise RunDirError(f"agent checkpoint for step {step} is missing; cannot commit")
    for dirpath, _, names in os.walk(tmp):
      part_files.extend(os.path.join(dirpath, n) for n in names)
    files = self.shared.entries(tmp)
    shared = sorted(files)
    for file_path in sorted(part_files):
      fileio.fsync(file_path)
      # Listed under the name it has once the directory is renamed into place.
      rel = os.path.relpath(file_path, self.root_dir).replace(
          os.path.relpath(tmp, self.root_dir), os.path.relpath(final, self.root_dir), 1)
      files[rel] = {"size": os.path.getsize(file_path), "sha256": fileio.sha256_file(file_path)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "committed_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "summary": summary,
        "files": files,
        "shared": shared,
    }
    fileio.atomic_write_json(os.path.join(tmp, layout.COMMIT_MARKER), manifest)
    fileio.fsync(self._ckpt_dir)
    os.rename(tmp, final)  # The commit point.
    fileio.fsync(self._bundle_root)
    fileio.atomic_write_json(os.path.join(self.root_dir, layout.LAST_COMMIT_FILE),
                             {"step": step, "committed_at": manifest["committed_at"]})
    bundle = Bundle(step=step, path=final, manifest=manifest)
    self._prune()
    hooks.after_commit(self.root_dir, bundle, self._keep)  # a gs:// run uploads it
    return bundle

  def point_tf_state_at(self, step: int) -> None:
    """Makes `tf.train.latest_checkpoint` name ckpt-`step` (and list the rest),
    for users and TF-Agents' tools; the job itself never reads it."""
    steps = [b.step for b in self.committed() if b.step <= step and b.problem is None]
    fileio.atomic_write_text(os.path.join(self._ckpt_dir, TF_STATE_FILE),
                             checkpoint_state_text(step, steps))

  def _prune(self) -> None:
    bundles = [b for b in self.committed() if b.problem is None]
    for bundle in bundles[:-self._keep]:
      self.delete(bundle)
    self.point_tf_state_at(bundles[-1].step)

  def delete(self, bundle: Bundle) -> None:
    """Removes a bundle: hidden first (one rename), so a crash midway leaves no
    numbered directory that would read as damage; the rest is leftovers."""
    hidden = os.path.join(self._bundle_root, f"{HIDDEN_PREFIX}deleting-{layout.step_name(bundle.step)}")
    os.rename(bundle.path, hidden)
    for path in glob.glob(layout.agent_checkpoint_prefix(self.root_dir, bundle.step) + ".*"):
      os.remove(path)
    shutil.rmtree(hidden, ignore_errors=True)
    # Last: a crash before this leaves files no bundle refers to, removed at the next start.
    self.shared.remove(set(bundle.manifest.get("shared", [])))


def file_problem_at(path: str, expected: dict[str, Any]) -> str | None:
  """None if the file at `path` has the manifest entry's size and SHA-256."""
  if not os.path.isfile(path):
    return "is missing"
  size = os.path.getsize(path)
  if size != expected["size"]:
    return f"has {size} bytes, expected {expected['size']}"
  if fileio.sha256_file(path) != expected["sha256"]:
    return "fails its checksum"
  return None


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


def checkpoint_state_text(step: int, steps: list[int]) -> str:
  """TensorFlow's `checkpoint` state file (a text `CheckpointState`, as
  `tf.compat.v1.train.update_checkpoint_state` writes it) naming ckpt-`step`
  as the latest of `steps`, written without loading TensorFlow (the store's
  users, `trainer.status` and the fast tests, load none). Relative paths:
  they resolve against the directory, which may move."""
  paths = [f"ckpt-{s}" for s in steps if s != step] + [f"ckpt-{step}"]  # the latest last, as TF's
  return "".join([f'model_checkpoint_path: "ckpt-{step}"\n',
                  *(f'all_model_checkpoint_paths: "{p}"\n' for p in paths)])
