"""Whether a run can resume under a changed config, decided before anything is written.

Some changes cannot restore at all: the agent's variables change shape or
name (a wider network, another agent, an environment with other specs), or
the replay's saved form changes (another backend, its capacity, the rows of
the in-graph buffer). Those are refused with the part that cannot be
restored, and no flag is suggested: `--allow_config_change` would not help.
Every other change that is not benign is refused unless that flag is given
(`RunConfig.refuse_unless_allowed`), and with it the resume works.
"""

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping

import tensorflow as tf

from trainer.checkpoint.bundle_store import Bundle
from trainer.config import gin_config
from trainer.errors import ConfigError
from trainer.rundir import layout

_NOT_VARIABLES = "_CHECKPOINTABLE_OBJECT_GRAPH"


def check(run_config: gin_config.RunConfig, bundle: Bundle | None, root_dir: str, *,
          replay_fn: Callable, build_agent: Callable[[], tuple],
          derived: Mapping[str, str] | None = None) -> None:
  """Raises ConfigError if the changed config cannot resume the run, or needs the flag.

  `build_agent() -> (agent, train_step)` builds the configured agent (nothing
  in the run directory is touched). `derived`: replay bindings that the loop
  sets itself, each from another binding (the on-policy loop's capacity, from
  `train.collect_steps_per_iteration`: `Loop.derived_replay_bindings`). A
  change of one is not the experiment's (the loop refuses a bound value that
  differs); a change of its source shapes the replay.
  """
  derived = {f"{getattr(replay_fn, '__name__', '')}.{param}": source
             for param, source in (derived or {}).items()}
  run_config = dataclasses.replace(run_config, changes=tuple(
      c for c in run_config.changes if c.split(":")[0] not in derived))
  if not run_config.refused:
    return
  if bundle is not None:
    _check_replay(run_config, bundle, replay_fn, derived)
    _check_agent(run_config, bundle, root_dir, *build_agent())
  run_config.refuse_unless_allowed()


def _cannot_restore(run_config: gin_config.RunConfig, bundle: Bundle, what: str) -> ConfigError:
  return ConfigError(
      f"checkpoint bundle {bundle.step} cannot be restored into the changed config: {what}. "
      "Resume with the run's saved config (drop the change: --root_dir alone resumes with it), "
      "or start a new --root_dir", details=run_config.refused)


def _check_replay(run_config: gin_config.RunConfig, bundle: Bundle, replay_fn: Callable,
                  derived: Mapping[str, str]) -> None:
  """A replay restores only into the form it was saved in; each builder names
  the bindings that shape it (`saved_form_bindings`), or their sources."""
  changed = {c.split(":")[0] for c in run_config.refused}
  shaping = {"train.replay_fn", *(derived.get(b, b) for b in
                                  getattr(replay_fn, "saved_form_bindings", ()))}
  if hit := sorted(changed & shaping):
    raise _cannot_restore(run_config, bundle, f"its replay was saved with the old {hit[0]}")


def _check_agent(run_config: gin_config.RunConfig, bundle: Bundle, root_dir: str, agent,
                 train_step: tf.Variable) -> None:
  """Compares the new agent's variables with the bundle's, name and shape,
  through a checkpoint of the new agent written outside the run directory."""
  saved = dict(tf.train.list_variables(layout.agent_checkpoint_prefix(root_dir, bundle.step)))
  with tempfile.TemporaryDirectory(prefix="trainer-config-check-") as tmp:
    prefix = tf.train.Checkpoint(agent=agent, train_step=train_step).write(
        os.path.join(tmp, "new"))
    new = dict(tf.train.list_variables(prefix))
  # The bundle holds more (optimizer slots, made once training starts); never less.
  for name, shape in sorted(new.items()):
    if name == _NOT_VARIABLES:
      continue
    if name not in saved:
      raise _cannot_restore(run_config, bundle, f"the agent has a variable the saved one has "
                            f"not ({name.split('/.ATTRIBUTES')[0]}: another agent or network?)")
    if list(saved[name]) != list(shape):
      raise _cannot_restore(run_config, bundle, f"the agent's {name.split('/.ATTRIBUTES')[0]} "
                            f"is {list(saved[name])} in the bundle but {list(shape)} now")
