"""Gym's internals that the trainer relies on (checked against `PINNED["gym"]`).
Light: imports nothing (it must run before Gym is imported)."""

import sys
import types

# The module Gym's `__init__` imports to print its maintenance notice.
NOTICES_MODULE = "gym_notices.notices"


def hide_import_notice() -> None:
  """Stops `import gym` printing its maintenance notice to stderr; call it
  before Gym is imported (a no-op once `gym_notices.notices` is loaded).

  Relies on Gym's `__init__` reading the notice from the module
  `gym_notices.notices` (`notices.notices.get(__version__)`): an empty stand-in
  in `sys.modules` gives it none. Gym has no switch for it. Needed by the
  quiet logs of the commands and of `trainer.api` (this project pins gym
  0.23.0, TF-Agents' pin; nobody running the trainer can act on the notice).
  """
  if NOTICES_MODULE not in sys.modules:
    sys.modules[NOTICES_MODULE] = types.SimpleNamespace(notices={})
