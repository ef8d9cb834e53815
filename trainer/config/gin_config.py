"""The run's gin config: parse with clear errors, save, reload, check drift.

A run directory keeps the config it was started with in `DIR/config.gin`
(every binding, as `gin.config_str()` prints it). Resuming with only
`--root_dir` parses that file; extra `--gin_bindings` apply on top of it.
Resuming with `--gin_file` again compares the new config with the saved one:
changes to run-length knobs are accepted and logged; the job refuses any other
change (`RunConfig.refuse_unless_allowed`) unless `--allow_config_change` is
given, after it has checked that the saved run can be restored into the
changed config at all (a change that cannot restore is refused without
suggesting the flag: `trainer.loops.config_change`).
"""

import dataclasses
import difflib
import inspect
import os
import re
import tempfile
from collections.abc import Sequence

import gin

from trainer.compat import gin as compat_gin
from trainer.config import values
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
  allow_change: bool = False

  @property
  def refused(self) -> tuple[str, ...]:
    """The changes that change the experiment (all but the benign knobs')."""
    return tuple(c for c in self.changes if c.split(":")[0] not in BENIGN_BINDINGS)

  def refuse_unless_allowed(self) -> None:
    """Raises ConfigError (the diff, a change a line) for refused changes,
    unless --allow_config_change was given."""
    if self.refused and not self.allow_change:
      raise ConfigError(
          f"config differs from the run's saved config.gin in {len(self.refused)} binding(s), "
          "listed below. They change the experiment: use a new --root_dir, or pass "
          "--allow_config_change to resume anyway", details=self.refused)


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
    ConfigError: the files, bindings or root_dir are unusable.
  """
  files = _config_files(root_dir, gin_files)
  saved_path = os.path.join(root_dir, layout.CONFIG_FILE)
  saved = _read(saved_path) if os.path.isfile(saved_path) else None
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(files, list(gin_bindings))
  except Exception as e:  # gin raises many types; all mean a bad config.
    first, _, where = str(e).partition("\n")  # gin's message, then where in the config
    where = f" ({' '.join(where.split())})" if where.strip() else ""
    raise ConfigError(_no_addresses(
        f"bad gin config: {one_line(first.rstrip('.'))}{_did_you_mean(e)}{where}")) from e
  text = gin.config_str()
  values.check(literal_values(text))
  if saved is None:
    return RunConfig(text=text, is_new=True)
  return RunConfig(text=text, is_new=False, changes=tuple(diff(saved, text)),
                   allow_change=allow_config_change)


def _config_files(root_dir: str, gin_files: Sequence[str]) -> list[str]:
  """The files to parse: `gin_files`, or the run's saved config; checks `root_dir`."""
  check_root_dir(root_dir)
  saved_path = os.path.join(root_dir, layout.CONFIG_FILE)
  if not gin_files and not os.path.isfile(saved_path):
    raise ConfigError(
        f"{root_dir} holds no saved {layout.CONFIG_FILE}; start a run with "
        "--gin_file=configs/X.gin")
  files = list(gin_files) or [saved_path]
  for path in files:
    if not os.path.isfile(path):
      raise ConfigError(f"gin file not found: {path}; check the --gin_file path")
  return files


def precheck(root_dir: str, gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Checks what needs no registered configurable (so no TensorFlow): `root_dir`,
  the files, each file's and binding's syntax, and the literal values that
  `trainer.config.values` knows. `load` checks the rest.

  Raises:
    ConfigError: one line naming the problem and the fix.
  """
  found = {}
  for path in _config_files(root_dir, gin_files):
    found.update(literal_values(_read(path), where=path))
  for binding in gin_bindings:
    found.update(literal_values(binding, binding=binding))
  values.check(found)


def literal_values(config_text: str, *, where: str | None = None,
                   binding: str | None = None) -> dict[str, object]:
  """Maps 'scope/selector.param' to each binding's value, for the values that are
  literals (not references or macros); the last binding of a key wins, as in gin.

  Raises:
    ConfigError: the text does not parse (`where`: its file; `binding`: the
      --gin_bindings string it is).
  """
  out = {}
  try:
    for statement in compat_gin.binding_statements(config_text):
      if not hasattr(statement.value, "selector"):
        selector = (f"{statement.scope}/{statement.selector}" if statement.scope
                    else statement.selector)
        out[f"{selector}.{statement.arg_name}" if statement.arg_name else selector] = (
            statement.value)
  except Exception as e:  # gin's parser raises SyntaxError, tokenize's errors and more
    raise ConfigError(syntax_error(e, where=where, binding=binding)) from e
  return out


_BINDING_START = re.compile(r"\s+(?=[A-Za-z_][\w./]*\s*=)")


def syntax_error(error: Exception, *, where: str | None = None, binding: str | None = None) -> str:
  """One line for a gin syntax error; gin's two most common slips name their fix."""
  message = getattr(error, "msg", None) or (
      error.args[0] if error.args and isinstance(error.args[0], str) else str(error))
  lineno = getattr(error, "lineno", None)
  place = (f"--gin_bindings={binding!r}" if binding is not None else
           f"{where}{f' line {lineno}' if lineno else ''}" if where else "the config")
  line = getattr(error, "text", None) or binding or ""
  key, equals, value = line.partition("=")
  if "malformed node or string" in message and equals:
    key, value = key.strip(), value.strip()
    fixed = (f'--gin_bindings="{key}=\'{value}\'"' if binding is not None
             else f"{key} = '{value}'")
    return (f"bad gin config: {place}: {value} is not a Python value; quote a string: {fixed}")
  if "Expected newline" in message and binding is not None:
    parts = _BINDING_START.split(binding.strip())
    fixed = " ".join(f"--gin_bindings='{part}'" for part in parts)
    return (f"bad gin config: --gin_bindings={binding!r} holds {len(parts)} bindings; pass one "
            f"binding per --gin_bindings flag: {fixed}")
  if "Expected newline" in message:
    return f"bad gin config: {place}: more than one binding on a line; put one binding per line"
  return _no_addresses(f"bad gin config: {place}: {one_line(message).rstrip('.')}")


def _no_addresses(message: str) -> str:
  """Python's reprs (`<ast.Name object at 0x7f...>`) mean nothing to a user."""
  return re.sub(r"<([\w.]+) object at 0x[0-9a-f]+>", r"\1", message)


def _did_you_mean(error: Exception) -> str:
  """'; did you mean X?' for a misspelt configurable or parameter, from gin's
  registry (private: `trainer.compat.gin`; any surprise in it only loses the hint)."""
  text = str(error)
  try:
    if match := re.search(r"No configurable matching (?:reference )?'@?([\w./]+?)(?:\(\))?'", text):
      names = sorted({selector.split(".")[-1] for selector in compat_gin.registered_selectors()})
      close = difflib.get_close_matches(match.group(1).split(".")[-1], names, n=1)
    elif match := re.search(r"Configurable '([\w./]+)' doesn't have a parameter named '(\w+)'", text):
      function = compat_gin.registered_function(match.group(1))
      params = list(inspect.signature(function).parameters) if function is not None else []
      close = [f"{match.group(1)}.{name}"
               for name in difflib.get_close_matches(match.group(2), params, n=1)]
    else:
      return ""
  except Exception:  # the hint is a courtesy; the error stands without it
    return ""
  return f"; did you mean {close[0]}?" if close else ""


def save(root_dir: str, run_config: RunConfig) -> None:
  try:
    fileio.atomic_write_text(os.path.join(root_dir, layout.CONFIG_FILE), run_config.text)
  except OSError as e:
    raise RunDirError(f"cannot write the config into {root_dir}: {e}") from e


def saved_environment_name(root_dir: str | None) -> str | None:
  """The Gym id that a run's saved config names, if it names one."""
  path = os.path.join(root_dir or "", layout.CONFIG_FILE)
  if not root_dir or not os.path.isfile(path):
    return None
  value = bindings(_read(path)).get("create_gym_environment.name")
  return value.strip("'\"") if value else None


def bindings(config_text: str) -> dict[str, str]:
  """Maps 'scope/selector.param' (or a macro name) to its value's text."""
  out = {}
  for statement in compat_gin.binding_statements(config_text):
    selector = f"{statement.scope}/{statement.selector}" if statement.scope else statement.selector
    key = f"{selector}.{statement.arg_name}" if statement.arg_name else selector
    out[key] = _value_text(statement.value)
  return out


def _value_text(value) -> str:
  """A binding's value as written (`@name` for a configurable, registered or not)."""
  selector = getattr(value, "selector", None)
  if isinstance(selector, str):
    return f"@{selector}{'()' if getattr(value, 'evaluate', False) else ''}"
  return repr(value)


# The order a diff is read in: what the job acts in, then what acts, then the rest.
_DIFF_GROUPS = ("environment", "agent", "replay", "train.")


def _diff_order(key: str) -> tuple[int, str]:
  for rank, word in enumerate(_DIFF_GROUPS):
    if word in key:
      return rank, key
  return len(_DIFF_GROUPS), key


def diff(old_text: str, new_text: str) -> list[str]:
  """Readable changes 'key: old -> new' between two configs: the environment's
  first, then the agent's, the replay's, the job's knobs and the rest."""
  old, new = bindings(old_text), bindings(new_text)
  changes = []
  for key in sorted(old.keys() | new.keys(), key=_diff_order):
    before, after = old.get(key, "(unset)"), new.get(key, "(unset)")
    if before != after:
      changes.append(f"{key}: {before} -> {after}")
  return changes


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()
