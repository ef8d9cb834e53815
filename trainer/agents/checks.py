"""Validation of agent builders' arguments: one line naming the binding and the fix."""

import math
from collections.abc import Sequence

from trainer.errors import ConfigError


def check_positive(name: str, value, kind=(int, float)) -> None:
  if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
      or value <= 0):
    raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def check_layers(name: str, layers: Sequence[int]) -> tuple[int, ...]:
  if not isinstance(layers, (list, tuple)) or not all(
      isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in layers):
    raise ConfigError(f"{name} must be a tuple of positive ints, e.g. (256, 256); got {layers!r}")
  return tuple(layers)
