"""The command line of every command: `--help` lists the command's own flags, and a
flag absl refuses (unknown, a bad value, a required one missing) is one line and
exit 2, naming the gin binding an unknown flag was meant to be.

Light on purpose (absl's flags, gin's parser): it runs before TensorFlow loads.
"""

import ast
import difflib
import os
import sys
from collections.abc import Callable

from absl import flags

from trainer.config import gin_config, settings
from trainer.errors import EXIT_OK, EXIT_USAGE
from trainer.rundir import layout

_HELP = ("-h", "-?", "--help", "--helpshort")


def flags_parser(prog: str, module: str) -> Callable[[list[str]], list[str]]:
  """absl's `flags_parser` for `app.run`: `module` defines the command's flags."""

  def parse(argv: list[str]) -> list[str]:
    if any(arg in _HELP for arg in argv[1:]):
      sys.stdout.write(usage(module))
      sys.exit(EXIT_OK)
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      sys.stderr.write(f"{prog}: error: {flag_error(e, argv, prog, module)}\n")
      sys.exit(EXIT_USAGE)

  return parse


def usage(module: str) -> str:
  """The command's docstring, then its flags (absl's own help lists only __main__'s)."""
  doc = (sys.modules[module].__doc__ or "").strip("\n")
  return (f"{doc}\n\nflags:\n{flags.FLAGS.module_help(module).strip(chr(10))}\n\n"
          "--verbosity=1 shows other libraries' log lines; --helpfull lists absl's flags too.\n")


def flag_error(error: flags.Error, argv: list[str], prog: str, module: str) -> str:
  """One line for a flag absl refused, naming the fix."""
  if isinstance(error, flags.UnrecognizedFlagError):
    return _unknown_flag(error.flagname, str(error.flagvalue), argv, prog, module)
  message = " ".join(str(error).split())
  name = message.split("--", 1)[1].split("=", 1)[0] if "flag --" in message else None
  if name is None or name not in flags.FLAGS:
    return f"{message}; {_command(prog)} --help lists its flags"
  if "must have a value other than None" in message:
    return f"--{name} is required ({flags.FLAGS[name].help.rstrip('.')}): pass --{name}=..."
  value = message.split("=", 1)[1].split(": ", 1)[0]
  return f"--{name}={value} must be {_kind(flags.FLAGS[name])}; see {_command(prog)} --help"


def _command(prog: str) -> str:
  """How the user ran the command: `python -m trainer.train` (prog when not run so)."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  return f"python -m {spec.name}" if spec is not None else prog


def _kind(flag: flags.Flag) -> str:
  enum_values = getattr(flag.parser, "enum_values", None)
  if enum_values:
    return f"one of {', '.join(enum_values)}"
  return {"int": "an int", "float": "a number", "bool": "true or false"}.get(
      flag.flag_type(), f"a {flag.flag_type()}")


def _unknown_flag(name: str, arg: str, argv: list[str], prog: str, module: str) -> str:
  value = arg.split("=", 1)[1] if "=" in arg else "VALUE"
  binding = _binding_named(name, argv)
  if binding is not None:
    try:
      ast.literal_eval(value)
      fixed = f"--gin_bindings='{binding}={value}'"
    except (ValueError, SyntaxError):
      fixed = f"--gin_bindings=\"{binding}='{value}'\""
    return f"unknown flag --{name}: hyperparameters are gin bindings: use {fixed}"
  own = [flag.name for flag in flags.FLAGS.get_key_flags_for_module(module)]
  close = difflib.get_close_matches(name, own, n=1)
  hint = f"did you mean --{close[0]}?" if close else f"{_command(prog)} --help lists its flags"
  return f"unknown flag --{name}; {hint}"


def _binding_named(name: str, argv: list[str]) -> str | None:
  """The gin binding a flag `--name` was meant to be: a knob of the job
  (`train.name`), or a binding of that parameter in the command's config."""
  if name in settings.knob_names():
    return f"train.{name}"
  files = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--gin_file=")]
  roots = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--root_dir=")]
  files = files or [os.path.join(root, layout.CONFIG_FILE) for root in roots]
  for path in files:
    try:
      with open(path) as f:
        keys = gin_config.bindings(f.read())
    except Exception:  # an unreadable or bad config: the hint is a courtesy
      continue
    for key in keys:
      if key.split("/")[-1].split(".")[-1] == name:
        return key
  return None
