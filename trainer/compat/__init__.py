"""Every private or fragile piece of a dependency that the trainer uses, one named function each.

A library's private attribute (`ConcreteFunction._call_flat`, gin's registry)
or internal module (`tensorflow.python...`) can change in any release. Each use
lives here, in the module of its library (`tf`, `tf_agents`, `gin`, `gym`),
with a docstring saying what it reaches into, why the trainer needs it, and
the version it was checked against (`PINNED`). tests/test_compat.py holds a
canary per function that fails naming the library, the installed version and
the pinned one when the piece changes: run it first after an upgrade.

Light on purpose: this module imports no library; each submodule imports only
its own library (and `trainer.compat`).
"""

from importlib import metadata

# The versions each function here was checked against (this project's pins). Reverb
# has none: the replay uses only its public API (`trainer.replay.writers`).
PINNED = {"tensorflow": "2.15", "tf_agents": "0.19.0", "gin": "0.5.0", "gym": "0.23.0"}

# The module here of each library's pieces.
_MODULES = {"tensorflow": "tf", "tf_agents": "tf_agents", "gin": "gin", "gym": "gym"}

# The pip distribution of each library.
_DISTRIBUTIONS = {"tensorflow": "tensorflow", "tf_agents": "tf-agents", "gin": "gin-config",
                  "gym": "gym"}


def installed(library: str) -> str:
  """The installed version of `library` (a key of `PINNED`), or 'not installed'."""
  try:
    return metadata.version(_DISTRIBUTIONS[library])
  except metadata.PackageNotFoundError:
    return "not installed"


def broken(library: str, what: str, detail: str) -> str:
  """The message for a private piece of `library` that is no longer what the
  trainer relies on: names it, both versions, and where to fix it."""
  return (f"{library} {installed(library)} changed {what} (the trainer was checked against "
          f"{library} {PINNED[library]}, trainer.compat.PINNED): {detail}. Update "
          f"trainer/compat/{_MODULES[library]}.py for the installed version, or install {library} "
          f"{PINNED[library]}")


class Broken(AttributeError):
  """A private piece of a library is gone; the message is `broken`'s."""


def reach(library: str, owner: object, name: str, what: str):
  """`owner.name`, a private attribute of `library`; if it is gone, `Broken`
  (an AttributeError) with `broken`'s message instead of a bare one."""
  try:
    return getattr(owner, name)
  except AttributeError as e:
    raise Broken(broken(library, what, f"{name!r} is gone ({e})")) from e
