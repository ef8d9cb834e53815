"""The policy directory's index: `index.json`, the LATEST/BEST pointers, retention.

Reads and writes only JSON and directory names (no TensorFlow), so status
tools can use it. An export is listed once its directory is in place, which
happens by an atomic rename after it is completely written.
"""

import dataclasses
import glob
import os
import shutil
from typing import Any

from trainer import fileio, layout

HIDDEN_PREFIX = ".tmp-"  # Exports being written or deleted; never listed.


@dataclasses.dataclass(frozen=True)
class Retention:
  """Which exports to keep: the last `keep_last`, the best `keep_best` by eval
  return, and every export whose step is a multiple of `keep_every` (0: none).
  Whatever `latest` or `best` names is always kept."""

  keep_last: int = 5
  keep_best: int = 3
  keep_every: int = 0

  def keep(self, exports: list[dict[str, Any]]) -> set[int]:
    steps = [e["train_step"] for e in exports]
    kept = set(steps[-self.keep_last:]) if self.keep_last > 0 else set()
    scored = sorted((e for e in exports if e.get("eval_average_return") is not None),
                    key=lambda e: e["eval_average_return"], reverse=True)
    kept.update(e["train_step"] for e in scored[:max(self.keep_best, 1)])  # `best` stays
    if self.keep_every > 0:
      kept.update(s for s in steps if s % self.keep_every == 0)
    if steps:
      kept.add(steps[-1])  # `latest` stays
    return kept


def list_exports(policy_dir: str) -> list[dict[str, Any]]:
  """Metadata of every visible export, oldest first, each with its 'path'."""
  exports = []
  for path in sorted(glob.glob(os.path.join(policy_dir, "[0-9]" * layout.STEP_DIGITS))):
    try:
      metadata = fileio.read_json(os.path.join(path, layout.EXPORT_METADATA))
    except (OSError, ValueError):
      continue  # Not an export of ours.
    exports.append({**metadata, "train_step": int(os.path.basename(path)), "path": path})
  return exports


def write_index(policy_dir: str, retention: Retention | None = None) -> dict[str, Any]:
  """Applies `retention`, then rewrites index.json and the LATEST/BEST pointers."""
  exports = list_exports(policy_dir)
  if retention is not None and exports:
    kept = retention.keep(exports)
    for export in exports:
      if export["train_step"] not in kept:
        _delete(policy_dir, export)
    exports = [e for e in exports if e["train_step"] in kept]
  scored = [e for e in exports if e.get("eval_average_return") is not None]
  latest = os.path.basename(exports[-1]["path"]) if exports else None
  best = (os.path.basename(max(scored, key=lambda e: e["eval_average_return"])["path"])
          if scored else None)
  index = {"latest": latest, "best": best,
           "exports": [{**e, "path": os.path.basename(e["path"])} for e in exports]}
  fileio.atomic_write_json(os.path.join(policy_dir, layout.EXPORT_INDEX), index)
  for name, value in ((layout.LATEST_POINTER, latest), (layout.BEST_POINTER, best)):
    fileio.atomic_write_text(os.path.join(policy_dir, name), (value or "") + "\n")
  return index


def read_pointer(policy_dir: str, name: str) -> str | None:
  """The export path LATEST or BEST names, or None."""
  try:
    with open(os.path.join(policy_dir, name)) as f:
      value = f.read().strip()
  except OSError:
    return None
  return os.path.join(policy_dir, value) if value else None


def _delete(policy_dir: str, export: dict[str, Any]) -> None:
  """Hides the export first (rename), then deletes it and its TF-Agents checkpoint."""
  hidden = os.path.join(policy_dir, f"{HIDDEN_PREFIX}deleting-{os.path.basename(export['path'])}")
  os.rename(export["path"], hidden)
  shutil.rmtree(hidden, ignore_errors=True)
  shutil.rmtree(os.path.join(policy_dir, layout.TFA_CHECKPOINTS,
                             layout.tfa_policy_checkpoint(export["train_step"])),
                ignore_errors=True)
