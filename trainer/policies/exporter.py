"""Policy exports: `DIR/policies/`, a directory anyone can load and compare.

Each export `policies/<step>/` holds
- `greedy/`, `collect/`: standalone SavedModels written with TF-Agents'
  `PolicySaver` (signatures `action`, `get_initial_state`, `get_train_step`,
  `get_metadata`; metadata `env_step`);
- `serving/`: the greedy policy as a SavedModel that a process importing only
  TensorFlow loads, with a `serving_default` signature on flat named tensors
  (`observation` in, `action` out) for `saved_model_cli` and TF Serving;
- `metadata.json`.
`policies/index.json` lists every export with its metadata and names the
`latest` and `best` (by eval return); the plain files `policies/LATEST` and
`policies/BEST` hold the same names, for filesystems without symlinks.
Beside them is TF-Agents' own layout (`policy/`, `greedy_policy/`,
`collect_policy/`, `checkpoints/policy_checkpoint_<step>/`), so that
`tf_agents.policies.policy_loader.load` and TF-Agents' tooling work on a run.

Cost: the training loop only snapshots the policy's variables (milliseconds);
a background thread loads each snapshot into a shadow agent and writes the
export from it.
A SavedModel's graph is the same for every export, so each form's graph is
written once per process and every export writes only its variables.
An export is assembled in a hidden `.tmp-*` directory and renamed into place
before the index names it, so a crash never leaves a partial export visible.
A failed write is not skipped: `wait()` raises it, and the job waits for the
exports before it commits a bundle, so every export step at or below the
committed step has its export.
"""

import collections
import concurrent.futures
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
from tf_agents.policies import greedy_policy, policy_saver

from trainer.errors import RunDirError
from trainer.policies import policy_index
from trainer.policies.served_forms import Saver, ServingModule, Template
from trainer.rundir import fileio, layout

ENV_STEP_METADATA_KEY = "env_step"
_TMP_PREFIX = policy_index.HIDDEN_PREFIX
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


def export_metadata(*, env_steps: int, episodes: int, eval_average_return: float | None,
                    config_text: str) -> dict[str, Any]:
  """The metadata.json of an export (the exporter adds train_step and exported_at)."""
  return {"env_steps": env_steps, "episodes": episodes,
          "eval_average_return": eval_average_return, "config_sha256": config_hash(config_text),
          "versions": library_versions()}


_MAX_QUEUED = 3  # exports waiting for the writer before export() waits too


class ExportError(RunDirError):
  """A policy export could not be written."""

  def __init__(self, step: int, policy_dir: str, reason: str):
    super().__init__(f"cannot write the policy export of step {step} in {policy_dir} ({reason}); "
                     "earlier exports are intact")
    self.step, self.reason = step, reason


class PolicyExporter:
  """Exports the agent's policies without stalling training.

  `export()` takes a snapshot of the live agent's policy variables, train
  step and counters and queues the write; a single background thread loads
  each copy into a shadow agent and writes it, in order. `wait()` blocks
  until all are written.
  """

  def __init__(self, policy_dir: str, *, live_agent: tf_agent.TFAgent, shadow_agent: tf_agent.TFAgent,
               train_step: tf.Variable, shadow_train_step: tf.Variable,
               metadata_fn: Callable[[int], dict[str, Any]], retention: policy_index.Retention):
    self._policy_dir = policy_dir
    self._train_step = train_step
    self._shadow_step = shadow_train_step
    self._metadata_fn = metadata_fn
    self._retention = retention
    self._env_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
    live, shadow = _policy_variables(live_agent), _policy_variables(shadow_agent)
    if [v.shape for v in live] != [v.shape for v in shadow]:
      raise ValueError("the shadow agent's variables do not match the agent's")
    self._shadow = shadow
    # One call reads every policy variable into tensors of its own (a snapshot
    # that later train steps do not change).
    self._read_live = tf.function(lambda: [tf.identity(v.read_value()) for v in live],
                                  autograph=False)
    self._shadow_agent = shadow_agent
    self._template_root = os.path.join(self._policy_dir, f"{_TMP_PREFIX}templates-{os.getpid()}")
    self._forms: dict[str, Template] | None = None  # made by the first write
    os.makedirs(policy_dir, exist_ok=True)
    self._clean_partial()
    # The one-time work (the savers, each form's graph) is done in the background
    # thread: by `prebuild()`, or else by the first export's write.
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
    self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
    self._queued: set[int] = set()  # steps whose export is queued or written
    self._failed: dict[int, str] = {}  # step -> reason, until wait() reports it

  def _clean_partial(self) -> None:
    """Removes hidden leftovers of interrupted exports; re-derives the index."""
    for pattern in (_TMP_PREFIX + "*", os.path.join(layout.TFA_CHECKPOINTS, _TMP_PREFIX + "*")):
      for path in glob.glob(os.path.join(self._policy_dir, pattern)):
        shutil.rmtree(path, ignore_errors=True)
    if os.path.isdir(self._policy_dir):
      fileio.remove_stale_temporaries(self._policy_dir)
      policy_index.write_index(self._policy_dir)
      # TF-Agents' checkpoint of an export that is gone (a crash in retention).
      exported = {e["train_step"] for e in policy_index.list_exports(self._policy_dir)}
      pattern = layout.TFA_POLICY_CHECKPOINT_PREFIX + "[0-9]" * layout.STEP_DIGITS
      for path in glob.glob(os.path.join(self._policy_dir, layout.TFA_CHECKPOINTS, pattern)):
        if int(path[-layout.STEP_DIGITS:]) not in exported:
          shutil.rmtree(path, ignore_errors=True)

  def has_export(self, step: int) -> bool:
    return os.path.isdir(os.path.join(self._policy_dir, layout.step_name(step)))

  def supersede_after(self, step: int) -> None:
    """Removes the exports above `step`, the step a job resumes from: they came
    from training after its last bundle, which the job does again (and exports
    again, from the policy it then has)."""
    removed = policy_index.remove_exports_after(self._policy_dir, step)
    if removed:
      logging.warning("Removed exports %s: they were made after checkpoint %d by training that "
                      "is done again from it, and are exported again on the way.", removed, step)

  def export(self, env_steps: int) -> float:
    """Snapshots the policy and queues its export; returns the stall in seconds.

    The snapshot is a copy of the policy's variables, so an export never
    waits for an earlier one still being written (the first export of a
    process also builds the templates, seconds of work): up to `_MAX_QUEUED`
    exports queue.
    """
    start = time.monotonic()
    step = int(self._train_step.numpy())
    if step in self._queued or self.has_export(step):
      return 0.0
    while len(self._pending) >= _MAX_QUEUED:  # writes that fall behind hold up training
      self._pending.popleft().result()
    values = self._read_live()
    metadata = self._metadata_fn(step)
    self._queued.add(step)
    self._pending.append(
        self._pool.submit(self._write_snapshot, step, env_steps, values, metadata))
    return time.monotonic() - start

  def _make_forms(self) -> None:
    metadata = {ENV_STEP_METADATA_KEY: self._env_steps}

    def saver(policy) -> Saver:
      return Saver(policy, train_step=self._shadow_step, metadata=metadata, batch_size=None)

    # As TF-Agents' PolicySavedModelTrigger: the raw policy, its greedy version
    # (the mode of a stochastic policy such as SAC's), the collect policy.
    agent = self._shadow_agent
    greedy = greedy_policy.GreedyPolicy(agent.policy)
    self._raw_saver = saver(agent.policy)
    greedy_saver, collect_saver = saver(greedy), saver(agent.collect_policy)
    self._forms = {
        name: Template(form, os.path.join(self._template_root, name))
        for name, form in ((layout.GREEDY_POLICY, greedy_saver),
                           (layout.COLLECT_POLICY, collect_saver),
                           (layout.SERVING_POLICY, ServingModule(greedy)))
    }
    # TF-Agents' full SavedModels: the same graphs (the raw policy's of its own),
    # written with the variables of the export that first needs them.
    self._tfa_templates = {
        layout.TFA_RAW_POLICY: Template(self._raw_saver,
                                         os.path.join(self._template_root, layout.TFA_RAW_POLICY)),
        layout.TFA_GREEDY_POLICY: self._forms[layout.GREEDY_POLICY],
        layout.TFA_COLLECT_POLICY: self._forms[layout.COLLECT_POLICY],
    }

  def prebuild(self) -> None:
    """Starts the one-time work in the background now. A job calls it at
    start-up: its first checkpoint waits for the exports before it, and would
    otherwise wait for this work too (seconds of CPU)."""
    self._pool.submit(self._build_templates)

  def _build_templates(self) -> None:
    try:
      if self._forms is None:
        self._make_forms()
      for template in {**self._forms, **self._tfa_templates}.values():
        template.ensure()
    except (OSError, tf.errors.OpError) as e:  # the first export tries again and reports it
      logging.warning("Preparing the export templates failed (%s); the first export retries.",
                      fileio.write_error_reason(e))

  def _write_snapshot(self, step: int, env_steps: int, values: list[tf.Tensor],
                      metadata: dict[str, Any]) -> str | None:
    """In the export thread: loads a snapshot into the shadow agent and writes it."""
    if self._forms is None:
      self._make_forms()
    for variable, value in zip(self._shadow, values, strict=True):
      variable.assign(value)
    self._shadow_step.assign(step)
    self._env_steps.assign(env_steps)
    return self._write_export(step, metadata)

  def wait(self) -> None:
    """Blocks until queued exports are written.

    Raises:
      ExportError: an export could not be written (disk full, permissions).
        A job must not commit a bundle past its step: the rerun then trains
        through that step again and writes it.
    """
    while self._pending:
      self._pending[0].result()
      self._pending.popleft()
    if self._failed:
      step, reason = min(self._failed.items())
      self._failed.clear()
      raise ExportError(step, self._policy_dir, reason)

  def queued(self) -> list[concurrent.futures.Future]:
    """The exports queued now, for `wait_for` (from another thread)."""
    return list(self._pending)

  def wait_for(self, queued: list[concurrent.futures.Future], step: int) -> None:
    """Blocks until the `queued` exports are written; raises `ExportError` if an
    export at or below `step` failed. Safe beside the training thread: unlike
    `wait`, it changes nothing (that thread's next `wait` reports the failure too)."""
    for future in queued:
      future.result()
    failed = sorted((s, reason) for s, reason in list(self._failed.items()) if s <= step)
    if failed:
      first, reason = failed[0]
      raise ExportError(first, self._policy_dir, reason)

  def close(self) -> None:
    """Waits for queued exports (failures were reported by `wait`, or are logged)."""
    try:
      self.wait()
    except ExportError:
      pass  # already logged by the export thread
    finally:
      self._pool.shutdown()
      shutil.rmtree(self._template_root, ignore_errors=True)

  def _write_export(self, step: int, metadata: dict[str, Any]) -> str | None:
    final = os.path.join(self._policy_dir, layout.step_name(step))
    tmp = os.path.join(self._policy_dir, f"{_TMP_PREFIX}{layout.step_name(step)}")
    start = time.monotonic()
    try:
      shutil.rmtree(tmp, ignore_errors=True)
      for name, form in self._forms.items():
        form.write(os.path.join(tmp, name))
      metadata = {**metadata, "train_step": step,
                  "exported_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
      fileio.atomic_write_json(os.path.join(tmp, layout.EXPORT_METADATA), metadata)
      fileio.fsync(tmp)
      os.rename(tmp, final)
      fileio.fsync(self._policy_dir)
      self._write_tf_agents_layout(step)
      policy_index.write_index(self._policy_dir, self._retention)
    except (OSError, tf.errors.OpError) as e:
      shutil.rmtree(tmp, ignore_errors=True)
      reason = fileio.write_error_reason(e)
      self._failed[step] = reason
      logging.error("Policy export at step %d failed (%s); earlier exports are intact, and no "
                    "checkpoint past it will be committed.", step, reason)
      return None
    logging.info("Exported policies at step %d to %s (%.2f s, in the background).", step, final,
                 time.monotonic() - start)
    return final

  def _ensure_tf_agents_models(self) -> None:
    """TF-Agents' full SavedModels, written once per run (as its trigger does):
    the template's graph and the variables of the export being written."""
    for name, template in self._tfa_templates.items():
      path = os.path.join(self._policy_dir, name)
      if not os.path.isfile(os.path.join(path, policy_saver.POLICY_SPECS_PBTXT)):
        tmp = os.path.join(self._policy_dir, f"{_TMP_PREFIX}{name}")
        shutil.rmtree(tmp, ignore_errors=True)
        template.write(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)

  def _write_tf_agents_layout(self, step: int) -> None:
    """TF-Agents' layout: the full SavedModels, and a variables checkpoint per export."""
    self._ensure_tf_agents_models()
    checkpoints = os.path.join(self._policy_dir, layout.TFA_CHECKPOINTS)
    tmp = os.path.join(checkpoints, f"{_TMP_PREFIX}{step:010d}")
    shutil.rmtree(tmp, ignore_errors=True)
    self._raw_saver.save_checkpoint(tmp)
    target = os.path.join(checkpoints, layout.tfa_policy_checkpoint(step))
    shutil.rmtree(target, ignore_errors=True)  # left by a crash in retention
    os.rename(tmp, target)


def _policy_variables(agent: tf_agent.TFAgent) -> list[tf.Variable]:
  """The variables the exported policies read, in a stable order, once each."""
  seen, out = set(), []
  for v in list(agent.policy.variables()) + list(agent.collect_policy.variables()):
    if id(v) not in seen:
      seen.add(id(v))
      out.append(v)
  return out
