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

from trainer.rundir import fileio, layout

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


def read_index(policy_dir: str) -> dict[str, Any]:
  """index.json as written, or {} if it is absent or unreadable."""
  try:
    index = fileio.read_json(os.path.join(policy_dir, layout.EXPORT_INDEX))
  except (OSError, ValueError):
    return {}
  return index if isinstance(index, dict) else {}


def pruned_steps(policy_dir: str) -> set[int]:
  """The steps whose exports retention deleted, as index.json records them."""
  pruned = read_index(policy_dir).get("pruned", [])
  if not isinstance(pruned, list):
    return set()
  return {s for s in pruned if isinstance(s, int) and not isinstance(s, bool)}


def remove_exports_after(policy_dir: str, step: int) -> list[int]:
  """Deletes the exports above `step` (hidden first, then gone), and rewrites
  the index; returns their steps."""
  removed = [e for e in list_exports(policy_dir) if e["train_step"] > step]
  if removed:
    write_index(policy_dir, exclude={e["train_step"] for e in removed})
  for export in removed:
    _delete(policy_dir, export)
  return [e["train_step"] for e in removed]


def write_index(policy_dir: str, retention: Retention | None = None, *,
                exclude: set[int] = frozenset()) -> dict[str, Any]:
  """Applies `retention`, rewriting index.json and the LATEST/BEST pointers first.

  The index never names an export that is gone: it is written before the
  exports that retention drops are deleted (a crash between the two leaves
  unlisted exports, which the next call drops again). The steps retention
  dropped are kept in `pruned`, so a missing export can be told from one that
  was deleted on purpose.
  """
  exports = [e for e in list_exports(policy_dir) if e["train_step"] not in exclude]
  pruned = pruned_steps(policy_dir)
  dropped = []
  if retention is not None and exports:
    kept = retention.keep(exports)
    dropped = [e for e in exports if e["train_step"] not in kept]
    exports = [e for e in exports if e["train_step"] in kept]
  pruned = (pruned | {e["train_step"] for e in dropped}) - {e["train_step"] for e in exports}
  scored = [e for e in exports if e.get("eval_average_return") is not None]
  latest = os.path.basename(exports[-1]["path"]) if exports else None
  best = (os.path.basename(max(scored, key=lambda e: e["eval_average_return"])["path"])
          if scored else None)
  index = {"latest": latest, "best": best,
           "exports": [{**e, "path": os.path.basename(e["path"])} for e in exports],
           "pruned": sorted(pruned)}
  fileio.atomic_write_json(os.path.join(policy_dir, layout.EXPORT_INDEX), index)
  for name, value in ((layout.LATEST_POINTER, latest), (layout.BEST_POINTER, best)):
    fileio.atomic_write_text(os.path.join(policy_dir, name), (value or "") + "\n")
  for export in dropped:
    _delete(policy_dir, export)
  return index


def export_grid(schedule: list[list[int]], committed_step: int,
                final_step: int | None = None) -> list[int]:
  """The export steps at or below `committed_step`.

  `schedule` holds `[start, interval]` segments, oldest first: from `start`
  on, exports fire at the multiples of `interval` above `start` (a resumed run
  whose `train.policy_export_interval` changed starts a segment). A complete
  run also exports its last step, `final_step`.
  """
  steps = set()
  for i, (start, interval) in enumerate(schedule):
    end = schedule[i + 1][0] if i + 1 < len(schedule) else committed_step
    end = min(end, committed_step)
    if interval > 0:
      steps.update(range((start // interval + 1) * interval, end + 1, interval))
  if final_step is not None and final_step <= committed_step:
    steps.add(final_step)
  return sorted(steps)


def missing_exports(policy_dir: str, grid: list[int]) -> list[int]:
  """The steps of `grid` with neither an export nor a record of its pruning."""
  present = {e["train_step"] for e in list_exports(policy_dir)}
  pruned = pruned_steps(policy_dir)
  return [s for s in grid if s not in present and s not in pruned]


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
