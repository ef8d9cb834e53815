"""Checks of bound values that need no TensorFlow: run where the value is used, and
on the whole config as soon as it is parsed (so a bad value is refused before
anything is written, in `trainer.train` too, where the roles' settings go unused,
and by `trainer.launch` before it starts a role).

Each check takes the value as gin bound it and raises ConfigError naming the
binding, the value and what it must be.
"""

from typing import Any

from trainer.config import settings
from trainer.errors import ConfigError


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_max_episode_steps(knob: str, value: Any, unset: str = "") -> None:
  """`<knob>.max_episode_steps`: None or a positive int (env steps); `unset` says
  what None means (", the registered limit" where there is one)."""
  if value is not None and (not _is_int(value) or value <= 0):
    raise ConfigError(f"{knob}.max_episode_steps must be a positive int (env steps) or "
                      f"None{unset}, got {value!r}")


def check_replay_shards(shards: Any, capacity: int | None = None) -> None:
  """`replay_shards.shards`: an int from 1 to the replay's capacity."""
  if not _is_int(shards) or shards < 1 or (capacity is not None and shards > capacity):
    most = f"the replay's capacity ({capacity})" if capacity is not None else "the replay's capacity"
    raise ConfigError(f"replay_shards.shards must be an int from 1 to {most}, got {shards!r}")


def check_samples_per_insert(value: Any) -> None:
  """`rate_control.samples_per_insert`: None (the job's own ratio) or a positive number."""
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ConfigError(f"rate_control.samples_per_insert must be a positive number, got {value!r}")


def check_error_buffer_chunks(value: Any) -> None:
  if not _is_int(value) or value < 1:
    raise ConfigError(f"rate_control.error_buffer_chunks must be an int >= 1, got {value!r}")


def check_logical_cpus(value: Any, devices: Any = None) -> None:
  """`mirrored_strategy.logical_cpus`: an int >= 0, not set together with devices."""
  if not _is_int(value) or value < 0:
    raise ConfigError(f"mirrored_strategy.logical_cpus must be an int >= 0, got {value!r}")
  if value and devices:
    raise ConfigError("set mirrored_strategy.devices or mirrored_strategy.logical_cpus, not both")


_KNOBS = {f"train.{name}": name for name in settings.knob_names()}


def check(values: dict[str, Any]) -> None:
  """Checks the literal values of a parsed config ('selector.param' -> value;
  values that are references or macros are left to the builders)."""
  for key, name in _KNOBS.items():
    if key in values:
      settings.check_knob(name, values[key])
  if "replay_shards.shards" in values:
    capacity = values.get("create_reverb_replay.capacity")
    check_replay_shards(values["replay_shards.shards"], capacity if _is_int(capacity) else None)
  if "rate_control.samples_per_insert" in values:
    check_samples_per_insert(values["rate_control.samples_per_insert"])
  if "rate_control.error_buffer_chunks" in values:
    check_error_buffer_chunks(values["rate_control.error_buffer_chunks"])
  if "mirrored_strategy.logical_cpus" in values:
    check_logical_cpus(values["mirrored_strategy.logical_cpus"],
                       values.get("mirrored_strategy.devices"))
