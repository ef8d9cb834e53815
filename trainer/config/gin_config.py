"""The run's gin config: parse with clear errors, save, reload, check drift.

A run directory keeps the config it was started with in `DIR/config.gin`
(every binding, as `gin.config_str()` prints it). Resuming with only
`--root_dir` parses that file; extra `--gin_bindings` apply on top of it.
Resuming with `--gin_file` again compares the new config with the saved one:
changes to run-length knobs are accepted and logged, any other change is
refused, because it would break the restore or silently change the
experiment, unless `--allow_config_change` is given.
"""

import dataclasses
import os
import tempfile
from collections.abc import Sequence

import gin
from gin import config_parser

from trainer.config.settings import BENIGN_BINDINGS
from trainer.errors import ConfigError, RunDirError, one_line
from trainer.rundir import fileio, layout


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """The config a job runs with.

  Attributes:
    text: every binding, as saved in `DIR/config.gin`.
    is_new: True when the run directory had no saved config.
    changes: human-readable changes against the saved config.
  """

  text: str
  is_new: bool
  changes: tuple[str, ...] = ()


def check_root_dir(root_dir: str) -> None:
  """Raises RunDirError unless `root_dir` is, or can become, a writable dir."""
  if not root_dir:
    raise ConfigError("--root_dir is required: pass --root_dir=DIR")
  path = os.path.abspath(root_dir)
  if os.path.islink(path) and not os.path.exists(path):
    raise ConfigError(
        f"--root_dir={root_dir} is a symbolic link to {os.readlink(path)}, which does not "
        "exist; create the target directory or pass another --root_dir")
  probe = path
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise ConfigError(
        f"--root_dir={root_dir} is not a directory ({probe} is a file); "
        "choose a directory path")
  try:  # A real write: access() says yes to root even on read-only mounts.
    fd, tmp = tempfile.mkstemp(dir=probe, prefix=".trainer-write-probe-")
    os.close(fd)
    os.remove(tmp)
  except OSError as e:
    raise ConfigError(
        f"--root_dir={root_dir} is not writable ({probe}: {e.strerror}); choose a "
        "writable location or fix its permissions") from e


def load(root_dir: str, gin_files: Sequence[str], gin_bindings: Sequence[str],
         *, allow_config_change: bool = False) -> RunConfig:
  """Parses the job's config into gin and checks it against the saved one.

  The configurables that configs name must be registered first (import
  `trainer.cli.registry`, as the commands do). Writes nothing: the caller
  saves `RunConfig.text` once it holds the run directory's lock.

  Raises:
    ConfigError: the files, bindings or root_dir are unusable, or the config
      differs from the saved one in a way that needs --allow_config_change.
  """
  check_root_dir(root_dir)
  saved_path = os.path.join(root_dir, layout.CONFIG_FILE)
  saved = _read(saved_path) if os.path.isfile(saved_path) else None
  if not gin_files and saved is None:
    raise ConfigError(
        f"{root_dir} holds no saved {layout.CONFIG_FILE}; start a run with "
        "--gin_file=configs/X.gin")
  files = list(gin_files) or [saved_path]
  for path in files:
    if not os.path.isfile(path):
      raise ConfigError(f"gin file not found: {path}; check the --gin_file path")
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(files, list(gin_bindings))
  except Exception as e:  # gin raises many types; all mean a bad config.
    raise ConfigError(f"bad gin config: {one_line(e)}") from e
  text = gin.config_str()
  if saved is None:
    return RunConfig(text=text, is_new=True)
  changes = diff(saved, text)
  refused = [c for c in changes if c.split(":")[0] not in BENIGN_BINDINGS]
  if refused and not allow_config_change:
    raise ConfigError(
        "config differs from the run's saved config.gin in " + "; ".join(refused)
        + ". These change the experiment or break the restore: use a new "
        "--root_dir, or pass --allow_config_change to resume anyway")
  return RunConfig(text=text, is_new=False, changes=tuple(changes))


def save(root_dir: str, run_config: RunConfig) -> None:

  try:
    fileio.atomic_write_text(os.path.join(root_dir, layout.CONFIG_FILE), run_config.text)
  except OSError as e:
    raise RunDirError(f"cannot write the config into {root_dir}: {e}") from e


def bindings(config_text: str) -> dict[str, str]:
  """Maps 'scope/selector.param' (or a macro name) to its value's text."""
  parser = config_parser.ConfigParser(config_text, gin.config.ParserDelegate(skip_unknown=True))
  out = {}
  for statement in parser:
    if isinstance(statement, config_parser.BindingStatement):
      selector = f"{statement.scope}/{statement.selector}" if statement.scope else statement.selector
      key = f"{selector}.{statement.arg_name}" if statement.arg_name else selector
      out[key] = repr(statement.value)
  return out


def diff(old_text: str, new_text: str) -> list[str]:
  """Readable changes 'key: old -> new' between two configs."""
  old, new = bindings(old_text), bindings(new_text)
  changes = []
  for key in sorted(old.keys() | new.keys()):
    before, after = old.get(key, "(unset)"), new.get(key, "(unset)")
    if before != after:
      changes.append(f"{key}: {before} -> {after}")
  return changes


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()
