"""A sweep's definition: configurations (a grid of gin bindings) x seeds, as members (no TensorFlow).

A sweep directory holds:

  ROOT/sweep.json        the definition (written once; a rerun must match it)
  ROOT/members/NAME/     one ordinary run directory per member (trainer.status,
                         plot, export and evaluate work on each)
  ROOT/logs/NAME.log     each member's output, appended run after run
  ROOT/outcomes.json     the local runner's last word on each member (failures)
  ROOT/report/           what trainer.report writes

A member is one configuration (one value of each `--grid` parameter) with one
seed (`train.seed`); members are numbered configuration-major, so member
`c * seeds + s` is configuration c with the s-th seed (a Slurm array task id
or a Kubernetes completion index picks one).
"""

import ast
import dataclasses
import hashlib
import itertools
import json
import os
from typing import Any

from trainer.errors import ConfigError

FORMAT = 1
DEFINITION_FILE = "sweep.json"
MEMBERS_DIR = "members"
LOGS_DIR = "logs"
OUTCOMES_FILE = "outcomes.json"
REPORT_DIR = "report"
SEED_BINDING = "train.seed"


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def parse_grid(flag: str) -> tuple[str, list[Any]]:
  """`'create_dqn_agent.learning_rate=[1e-3, 2e-3]'` -> (parameter, values)."""
  name, sep, text = flag.partition("=")
  name = name.strip()
  usage = (f"--grid={flag!r}: write it as PARAMETER=[VALUE, ...], e.g. "
           "--grid='create_dqn_agent.learning_rate=[1e-3, 2e-3]'")
  if not sep or not name or " " in name or "." not in name:
    raise ConfigError(usage)
  try:
    values = ast.literal_eval(text.strip())
  except (ValueError, SyntaxError) as e:
    raise ConfigError(f"{usage} (values are Python literals: numbers, 'strings', tuples, True, "
                      f"False, None; {text.strip()!r} is not)") from e
  if not isinstance(values, list) or not values:
    raise ConfigError(f"{usage} (the values must be a non-empty [list])")
  if len({repr(v) for v in values}) != len(values):
    raise ConfigError(f"--grid={flag!r} repeats a value; list each value once")
  return name, values


def _label_value(value: Any) -> str:
  return repr(value) if isinstance(value, str) else str(value)


@dataclasses.dataclass(frozen=True)
class Member:
  index: int
  name: str
  config: int  # the configuration's index
  seed: int
  bindings: tuple[str, ...]  # the grid's and the seed's, after the sweep's own


@dataclasses.dataclass(frozen=True)
class Definition:
  """What a sweep runs: `gin_files` (paths, with their contents' SHA-256) and
  `gin_bindings` for every member, then each configuration's grid bindings and
  its seed."""

  gin_files: tuple[tuple[str, str], ...]  # (absolute path, sha256)
  gin_bindings: tuple[str, ...]
  grid: tuple[tuple[str, tuple[Any, ...]], ...]
  seeds: tuple[int, ...]

  @staticmethod
  def create(gin_files: list[str], gin_bindings: list[str], grid_flags: list[str],
             seeds: int) -> "Definition":
    if not gin_files:
      raise ConfigError("--gin_file is required for a new sweep: pass --gin_file=configs/X.gin")
    files = []
    for path in gin_files:
      if not os.path.isfile(path):
        raise ConfigError(f"gin file not found: {path}; check the --gin_file path")
      files.append((os.path.abspath(path), _sha256(path)))
    grid = [parse_grid(flag) for flag in grid_flags]
    names = [name for name, _ in grid]
    if len(set(names)) != len(names):
      raise ConfigError("a --grid parameter is given twice; list all its values in one --grid")
    if SEED_BINDING in names:
      raise ConfigError(f"{SEED_BINDING} is the sweep's own: pass --seeds=N instead of a grid "
                        "over it")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
      raise ConfigError(f"--seeds must be an int >= 1 (seeds 0 .. N-1 per configuration), got "
                        f"{seeds!r}")
    return Definition(tuple(files), tuple(gin_bindings),
                      tuple((n, tuple(v)) for n, v in grid), tuple(range(seeds)))

  # --- what it expands to ----------------------------------------------------------

  @property
  def configs(self) -> list[dict[str, Any]]:
    """Each configuration: {"index", "label", "bindings", "values"}."""
    out = []
    names = [name for name, _ in self.grid]
    for index, combo in enumerate(itertools.product(*(values for _, values in self.grid))):
      short = [name.rsplit(".", 1)[-1] for name in names]
      out.append({
          "index": index,
          "label": ", ".join(f"{s}={_label_value(v)}" for s, v in zip(short, combo, strict=False)) or "base",
          "values": dict(zip(names, combo, strict=False)),
          "bindings": [f"{name} = {v!r}" for name, v in zip(names, combo, strict=False)]})
    return out

  @property
  def members(self) -> list[Member]:
    members = []
    for config in self.configs:
      for seed in self.seeds:
        index = len(members)
        members.append(Member(index, f"c{config['index']}_seed{seed}", config["index"], seed,
                              (*config["bindings"], f"{SEED_BINDING} = {seed}")))
    return members

  def member(self, index: Any) -> Member:
    members = self.members
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(members):
      raise ConfigError(f"--member must be an int from 0 to {len(members) - 1} (this sweep's "
                        f"{len(members)} members), got {index!r}")
    return members[index]

  def train_args(self, member: Member, root_dir: str) -> list[str]:
    """trainer.train's command-line arguments for `member`."""
    return [f"--root_dir={member_dir(root_dir, member)}",
            *(f"--gin_file={path}" for path, _ in self.gin_files),
            *(f"--gin_bindings={b}" for b in (*self.gin_bindings, *member.bindings))]

  # --- saved, and compared on a rerun -----------------------------------------------

  def to_json(self) -> dict[str, Any]:
    return {"format": FORMAT,
            "gin_files": [{"path": p, "sha256": h} for p, h in self.gin_files],
            "gin_bindings": list(self.gin_bindings),
            "grid": [{"parameter": n, "values": [repr(v) for v in vs]} for n, vs in self.grid],
            "seeds": list(self.seeds),
            "configs": [{k: c[k] for k in ("index", "label", "bindings")} for c in self.configs],
            "members": [{"index": m.index, "name": m.name, "config": m.config, "seed": m.seed}
                        for m in self.members]}

  @staticmethod
  def from_json(data: dict[str, Any]) -> "Definition":
    if data.get("format") != FORMAT:
      raise ConfigError(f"{DEFINITION_FILE} is of format {data.get('format')!r}, not {FORMAT}; "
                        "it was written by another trainer version")
    return Definition(
        tuple((f["path"], f["sha256"]) for f in data["gin_files"]), tuple(data["gin_bindings"]),
        tuple((g["parameter"], tuple(ast.literal_eval(v) for v in g["values"]))
              for g in data["grid"]), tuple(data["seeds"]))

  def diff(self, new: "Definition") -> list[str]:
    """Readable changes from this (saved) definition to `new`, one a line."""
    changes = []
    old_files, new_files = dict(self.gin_files), dict(new.gin_files)
    if list(old_files) != list(new_files):
      changes.append(f"gin files: {list(old_files)} -> {list(new_files)}")
    for path in old_files.keys() & new_files.keys():
      if old_files[path] != new_files[path]:
        changes.append(f"gin file {path}: its content changed since the sweep started "
                       f"(sha256 {old_files[path][:12]} -> {new_files[path][:12]})")
    if self.gin_bindings != new.gin_bindings:
      changes.append(f"gin bindings: {list(self.gin_bindings)} -> {list(new.gin_bindings)}")
    old_grid, new_grid = dict(self.grid), dict(new.grid)
    for name in sorted(old_grid.keys() | new_grid.keys()):
      before = list(old_grid[name]) if name in old_grid else "(not in the grid)"
      after = list(new_grid[name]) if name in new_grid else "(not in the grid)"
      if before != after:
        changes.append(f"grid {name}: {before} -> {after}")
    if self.seeds != new.seeds:
      changes.append(f"seeds: {len(self.seeds)} -> {len(new.seeds)}")
    return changes


def member_dir(root_dir: str, member: Member) -> str:
  return os.path.join(root_dir, MEMBERS_DIR, member.name)


def load(root_dir: str) -> Definition | None:
  """The sweep's saved definition, or None if `root_dir` holds none."""
  path = os.path.join(root_dir, DEFINITION_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return Definition.from_json(json.load(f))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"{path} is unreadable ({e}); restore it, or start a new --root_dir") from e
