"""The job's knobs (`train.*` in gin), each declared once.

A knob's declaration is one field of `Settings`: its name, default (or none:
required), lower bound, the line that documents it, and whether it may change
between runs of one experiment (`benign`: run length, schedules, logging,
retention). Validation, the list of benign bindings that a resume accepts, the
docs/configuration.md's knob table and the did-you-mean for a misspelt knob are all derived
from these fields. Counts are learner train steps unless marked "env steps",
and totals across restarts.
"""

import dataclasses
import difflib
import inspect
from typing import Any

from trainer.errors import ConfigError

_REQUIRED = object()
_MAX_SEED = 2**32 - 1  # Gym and NumPy take 32-bit seeds


def knob(doc: str, *, default: Any = _REQUIRED, minimum: int = 1, maximum: int | None = None,
         benign: bool = False) -> Any:
  """Declares one `train.*` knob (an int) as a `Settings` field."""
  metadata = {"doc": doc, "minimum": minimum, "maximum": maximum, "benign": benign,
              "required": default is _REQUIRED}
  if default is _REQUIRED:
    return dataclasses.field(metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """The job's knobs, validated on construction."""

  num_iterations: int = knob("train step at which the job ends", benign=True)
  checkpoint_interval: int = knob("train steps between checkpoint bundles", benign=True)
  policy_export_interval: int = knob("train steps between policy exports", benign=True)
  eval_interval: int = knob("train steps between evaluations (0: none)", minimum=0, benign=True)
  eval_episodes: int = knob("greedy episodes per evaluation", default=10, benign=True)
  initial_collect_steps: int = knob(
      "replay items collected by a random policy before training; skipped when the restored "
      "replay already holds that many", default=1000, minimum=0)
  collect_envs: int = knob(
      "environments collected from side by side, one policy call per step for all of them; each "
      "fills its own replay row (uniform) or Reverb writer", default=1)
  collect_steps_per_iteration: int = knob(
      "env steps collected before each chunk of `train_steps_per_iteration` train steps, in all "
      "environments together (a multiple of `collect_envs`)", default=1)
  train_steps_per_iteration: int = knob(
      "train steps per chunk (one `Learner.run` call unless an interval cuts it)", default=1)
  batch_size: int = knob(
      "transitions (sequences) per train step, in all (under a strategy of N replicas each "
      "trains on batch_size / N of them)", default=64)
  keep_checkpoints: int = knob("committed checkpoint bundles kept (the newest)", default=3,
                               benign=True)
  summary_interval: int = knob("train steps between TensorBoard summaries (0: none)",
                               default=1000, minimum=0, benign=True)
  log_interval: int = knob("train steps between progress lines", default=1000, benign=True)
  seed: int = knob("seeds Python, NumPy, TensorFlow and the environments", default=0, minimum=0,
                   maximum=_MAX_SEED)
  exports_keep_last: int = knob("the newest exports kept in `policies/`", default=5, benign=True)
  exports_keep_best: int = knob("the best exports (by eval return) kept as well", default=3,
                                minimum=0, benign=True)
  exports_keep_every: int = knob(
      "also keep every export whose step is a multiple of this (0: none)", default=0, minimum=0,
      benign=True)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      _check(field, getattr(self, field.name))
    if self.collect_steps_per_iteration % self.collect_envs:
      raise ConfigError(
          f"train.collect_steps_per_iteration={self.collect_steps_per_iteration} must be a "
          f"multiple of train.collect_envs={self.collect_envs} (each collect step steps every "
          "environment once)")

  @classmethod
  def from_bindings(cls, values: dict[str, Any]) -> "Settings":
    """The settings from `train.*` bindings; one line for an unknown or missing knob."""
    names = knob_names()
    for name in sorted(values.keys() - set(names)):
      close = difflib.get_close_matches(name, names, n=1)
      hint = f"did you mean train.{close[0]}?" if close else "see the knobs in docs/configuration.md"
      raise ConfigError(f"train.{name} is not a knob of the job; {hint}")
    for field in dataclasses.fields(cls):
      if field.metadata["required"] and field.name not in values:
        raise ConfigError(
            f"train.{field.name} is required ({field.metadata['doc']}); set it in the gin file "
            f"or pass --gin_bindings='train.{field.name} = N'")
    return cls(**values)

  @property
  def intervals(self) -> list[int]:
    """The intervals of the events that end a Learner call (0: the event is off)."""
    return [i for i in (self.checkpoint_interval, self.policy_export_interval,
                        self.eval_interval, self.log_interval) if i > 0]


def _check(field: dataclasses.Field, value: Any) -> None:
  name, minimum, maximum = field.name, field.metadata["minimum"], field.metadata["maximum"]
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"train.{name} must be an int, got {value!r}")
  if value < minimum:
    raise ConfigError(f"train.{name} must be {'>= 0' if minimum == 0 else '> 0'}, got {value}")
  if maximum is not None and value > maximum:
    raise ConfigError(f"train.{name} must be at most {maximum}, got {value}")


def check_knob(name: str, value: Any) -> None:
  """Raises ConfigError unless `value` is a valid value of the knob `train.<name>`."""
  _check(next(f for f in dataclasses.fields(Settings) if f.name == name), value)


def with_knobs(signature: inspect.Signature) -> inspect.Signature:
  """`signature` (of a function taking `**knobs`) with the knobs as keyword-only
  parameters in its place: what gin checks bindings against, once given to it
  by `trainer.compat.gin.set_signature`."""
  params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
  for field in dataclasses.fields(Settings):
    default = inspect.Parameter.empty if field.metadata["required"] else field.default
    params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                    annotation=int))
  return signature.replace(parameters=params)


def knob_names() -> list[str]:
  return [field.name for field in dataclasses.fields(Settings)]


# Bindings that may change between runs of one experiment; every other change
# is part of the experiment (or breaks the restore) and is refused on resume.
BENIGN_BINDINGS = frozenset(f"train.{field.name}" for field in dataclasses.fields(Settings)
                            if field.metadata["benign"]) | {
    # Where the learner trains, not what: a bundle restores under any strategy.
    "train.strategy", "mirrored_strategy.devices", "mirrored_strategy.logical_cpus"}


def knob_table() -> str:
  """The table of the job's knobs in docs/configuration.md (a test checks it holds it)."""
  rows = ["| knob | default | may change on resume | meaning |", "|---|---|---|---|"]
  for field in dataclasses.fields(Settings):
    default = "required" if field.metadata["required"] else str(field.default)
    benign = "yes" if field.metadata["benign"] else "no"
    rows.append(f"| `train.{field.name}` | {default} | {benign} | {field.metadata['doc']} |")
  return "\n".join(rows)
