"""Policy exports: standalone SavedModels under `DIR/policies/<step>/`.

Each export holds the greedy and the collect policy, each written by
TF-Agents' `PolicySaver` (signatures `action`, `get_initial_state`,
`get_train_step`, `get_metadata`; metadata `env_step`), and `metadata.json`.
An export is assembled in a hidden temporary directory and renamed into
place, so a crash never leaves a half-written export visible.
"""

import datetime
import glob
import hashlib
import importlib.metadata
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from absl import logging
from tf_agents.agents import tf_agent
from tf_agents.policies import policy_saver

from trainer import fileio, layout

ENV_STEP_METADATA_KEY = "env_step"
_TMP_PREFIX = ".tmp-"


_VERSIONED_PACKAGES = ("tensorflow", "tf-agents", "dm-reverb", "tensorflow-probability",
                       "gin-config", "gym")


def library_versions() -> dict[str, str]:
  """Installed versions of the libraries an export was made with."""
  import trainer
  versions = {"trainer": trainer.__version__}
  for package in _VERSIONED_PACKAGES:
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = "not installed"
  return versions


def config_hash(config_text: str) -> str:
  return hashlib.sha256(config_text.encode()).hexdigest()[:16]


class PolicyExporter:
  """Writes one export per call at the agent's current train step."""

  def __init__(self, root_dir: str, agent: tf_agent.TFAgent, train_step: tf.Variable,
               env_steps: tf.Variable, metadata_fn: Callable[[int], dict[str, Any]]):
    self._policy_dir = os.path.join(root_dir, layout.POLICY_DIR)
    self._train_step = train_step
    self._metadata_fn = metadata_fn
    metadata = {ENV_STEP_METADATA_KEY: env_steps}
    self._savers = {
        layout.GREEDY_POLICY: policy_saver.PolicySaver(
            agent.policy, train_step=train_step, metadata=metadata, batch_size=None),
        layout.COLLECT_POLICY: policy_saver.PolicySaver(
            agent.collect_policy, train_step=train_step, metadata=metadata, batch_size=None),
    }

  def clean_partial(self) -> None:
    for path in glob.glob(os.path.join(self._policy_dir, _TMP_PREFIX + "*")):
      shutil.rmtree(path, ignore_errors=True)

  def export(self) -> str | None:
    """Exports the current policies; returns the export's path, None if it failed.

    An export that already exists for this step is kept as it is. A failed
    export (disk full, permissions) is logged and leaves nothing visible:
    training goes on, since every checkpoint bundle still holds what is needed
    to export that policy later.
    """
    step = int(self._train_step.numpy())
    final = os.path.join(self._policy_dir, layout.step_name(step))
    if os.path.isdir(final):
      return final
    tmp = os.path.join(self._policy_dir, f"{_TMP_PREFIX}{layout.step_name(step)}-{os.getpid()}")
    try:
      return self._write(step, tmp, final)
    except (OSError, tf.errors.OpError) as e:
      shutil.rmtree(tmp, ignore_errors=True)
      reason = e.strerror if isinstance(e, OSError) else e.message
      logging.error("Policy export at step %d failed (%s); training continues and earlier "
                    "exports are intact.", step, reason)
      return None

  def _write(self, step: int, tmp: str, final: str) -> str:
    start = time.monotonic()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, saver in self._savers.items():
      saver.save(os.path.join(tmp, name))
    metadata = dict(self._metadata_fn(step))
    metadata["train_step"] = step
    metadata["exported_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    fileio.atomic_write_json(os.path.join(tmp, layout.EXPORT_METADATA), metadata)
    fileio.fsync(tmp)
    os.rename(tmp, final)
    fileio.fsync(self._policy_dir)
    logging.info("Exported policies at step %d to %s (%.2f s).", step, final,
                 time.monotonic() - start)
    return final
