"""What a checkpoint bundle holds, part by part, each with save() and restore() side by side.

- `AgentPart`: the agent (networks, optimizer slots) and the train step, as a
  TF checkpoint `train/checkpoints/ckpt-<N>` (TF-Agents' layout, so its tools
  read it);
- `ReplayPart`: the replay's items, in the bundle's `replay/`;
- the run state (counters, metrics, eval history, RNG; `run_state.RunState`),
  in the bundle's `state.json`;
- `OperativeConfigPart`: gin's operative config, for people (never read back:
  the run's `config.gin` is what a resume parses).

`BundleParts` writes them all into a bundle being built and restores them all
from a committed one. The bundle store (`bundle_store`) owns the commit: the
marker, the manifest and the fallback.
"""

import os
from typing import Any

import gin
import tensorflow as tf
from absl import logging

from trainer.checkpoint.bundle_store import Bundle
from trainer.checkpoint.run_state import RunState
from trainer.errors import RunDirError
from trainer.replay.base import Replay
from trainer.rundir import layout


class AgentPart:
  """The agent and the train step."""

  def __init__(self, root_dir: str, agent, train_step: tf.Variable):
    self._root = root_dir
    self._train_step = train_step
    self._checkpoint = tf.train.Checkpoint(agent=agent, train_step=train_step)

  def save(self, step: int) -> None:
    self._checkpoint.write(layout.agent_checkpoint_prefix(self._root, step))

  def restore(self, bundle: Bundle) -> None:
    """The one restore of the agent. After the Learner is built: it creates the
    optimizer's slot variables, and its `agent.initialize()` copies the online
    network into the target network, which would overwrite a restored target."""
    prefix = layout.agent_checkpoint_prefix(self._root, bundle.step)
    self._checkpoint.read(prefix).assert_existing_objects_matched()
    step = int(self._train_step.numpy())
    if step != bundle.step:
      raise RunDirError(f"checkpoint bundle {bundle.path} is step {bundle.step} but its agent "
                        f"checkpoint holds step {step}; resume from another --root_dir")


  def read_copy(self, prefix: str) -> None:
    """Reads an agent checkpoint copied aside (`agent_copy`), for an export:
    the optimizer's slots, which only training builds, are left unread."""
    self._checkpoint.read(prefix).expect_partial()


class ReplayPart:
  """The replay's items. A replay is built from the bundle's copy (a Reverb
  server loads its checkpoint as it starts), so restoring checks what it holds."""

  def __init__(self, replay: Replay):
    self._replay = replay

  def save(self, bundle_path: str) -> None:
    self._replay.save(os.path.join(bundle_path, layout.REPLAY_SUBDIR))

  def size(self) -> int:
    return self._replay.size()

  def restore(self, bundle: Bundle) -> None:
    self._replay.check_restored(int(bundle.summary["replay_size"]), bundle.replay_dir,
                                f"checkpoint bundle {bundle.step}")


class OperativeConfigPart:
  """The bindings the job used (gin's operative config), for people to read."""

  def save(self, bundle_path: str) -> None:
    with open(os.path.join(bundle_path, layout.OPERATIVE_CONFIG), "w") as f:
      f.write(gin.operative_config_str())

  def restore(self, bundle: Bundle) -> None:
    del bundle  # The run's config.gin is what a resume parses.


class BundleParts:
  """Every part of a bundle: written into a bundle being built, restored from a committed one."""

  def __init__(self, agent: AgentPart, replay: ReplayPart, run_state: RunState, *,
               num_iterations: int):
    self._agent, self._replay, self._run_state = agent, replay, run_state
    self._config = OperativeConfigPart()
    self._num_iterations = num_iterations

  def save(self, step: int, bundle_path: str, *, replay: bool = True) -> dict[str, Any]:
    """Writes every part of bundle `step` into `bundle_path`; returns the summary
    that its manifest carries. `replay=False`: all but the replay, which
    `save_replay` writes later (its recorded size is read now: a Reverb table
    grows or stays full, so the later checkpoint holds at least as many)."""
    self._agent.save(step)
    if replay:
      self.save_replay(bundle_path)
    summary = self._run_state.summary(step, self._replay.size(), self._num_iterations)
    self._run_state.save(bundle_path, summary)
    self._config.save(bundle_path)
    return summary

  def save_replay(self, bundle_path: str) -> None:
    self._replay.save(bundle_path)

  def restore(self, bundle: Bundle) -> None:
    self._replay.restore(bundle)  # first: a replay that lost items stops the resume
    self._agent.restore(bundle)
    self._run_state.restore(bundle)
    self._config.restore(bundle)
    logging.info("Resumed from step %d: replay size %d, env steps %d, episodes %d (%s).",
                 bundle.step, self._replay.size(), self._run_state.env_steps,
                 self._run_state.episodes, bundle.path)
