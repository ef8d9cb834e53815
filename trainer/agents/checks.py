"""Validation of agent builders' arguments: one line naming the binding and the fix."""

import math
from collections.abc import Sequence

from tf_agents.specs import tensor_spec

from trainer.errors import ConfigError

# The builders for each kind of action space, named by the error for the other kind.
_FOR_DISCRETE = "create_dqn_agent, create_c51_agent or create_ppo_agent"
_FOR_CONTINUOUS = "create_sac_agent, create_td3_agent or create_ppo_agent"


def check_positive(name: str, value, kind=(int, float)) -> None:
  if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
      or value <= 0):
    raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def check_layers(name: str, layers: Sequence[int]) -> tuple[int, ...]:
  if not isinstance(layers, (list, tuple)) or not all(
      isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in layers):
    raise ConfigError(f"{name} must be a tuple of positive ints, e.g. (256, 256); got {layers!r}")
  return tuple(layers)


def check_action_kind(builder: str, action_spec, *, discrete: bool):
  """`action_spec` as a tensor spec, if its kind (discrete or continuous) is the
  one `builder` needs; else one line naming the builders for its kind."""
  spec = tensor_spec.from_spec(action_spec)
  if spec.dtype.is_integer != discrete:
    kind, other, builders = (("discrete", "continuous", _FOR_CONTINUOUS) if discrete else
                             ("continuous", "discrete", _FOR_DISCRETE))
    raise ConfigError(f"{builder} needs a {kind} action space; use {builders} for {other} "
                      "actions")
  return spec
