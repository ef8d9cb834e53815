r"""Exports policies from committed checkpoint bundles, without training.

  python -m trainer.export --root_dir=DIR [--step=N | --all]
      [--format=saved_model|onnx] [--output=DIR/policies]

--format=saved_model (the default) rebuilds the run's agent from its saved
config, restores the agent of each chosen bundle and writes the same export as
training does (greedy, collect and serving SavedModels, metadata, index,
TF-Agents' layout). Without --step or --all it exports the latest bundle.

--format=onnx adds the greedy policy as `<export>/greedy.onnx` to exports:
the export of step N, every export in the index (--all), or the latest. An
export that does not exist yet is first written from its bundle. Each file is
run with onnxruntime on observations from the run's environment and kept only
if its actions match the export's SavedModel (equal for discrete actions,
within 1e-5 for continuous ones).

Writing into a run's directory (its `policies/`, by any path: symlinks are
resolved) takes that run's lock: it refuses while a job runs there. Reading
a bundle copies its agent checkpoint and counters aside first and checks them
against the bundle's manifest, so a job that prunes the bundle meanwhile (or
a damaged one) gives one clear line, or the next newest bundle, never a
half-read agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from trainer.cli import quiet  # noqa: E402  (first: before TensorFlow and Gym load)

quiet.before_imports()

from absl import flags, logging  # noqa: E402

from trainer import errors  # noqa: E402
from trainer.checkpoint.agent_copy import AgentCopy, BundleGone, copy_agent  # noqa: E402
from trainer.checkpoint.bundle_store import Bundle, BundleStore  # noqa: E402
from trainer.cli import shell  # noqa: E402
from trainer.config import gin_config  # noqa: E402
from trainer.policies import policy_index  # noqa: E402
from trainer.rundir import fileio, layout  # noqa: E402
from trainer.rundir.run_lock import RunLock, run_dir_holding  # noqa: E402
from trainer.storage import urls  # noqa: E402

if TYPE_CHECKING:  # TensorFlow loads once the command line is checked (main)
  import numpy as np
  import tensorflow as tf

flags.DEFINE_string("root_dir", None, "Run directory whose bundles to export (a path or "
                    "gs://BUCKET/PATH).")
flags.DEFINE_integer("step", None, "Export the bundle of this train step.")
flags.DEFINE_bool("all", False, "Export every committed bundle.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "onnx"],
                  "saved_model: SavedModel exports from bundles; onnx: add greedy.onnx to exports.")
flags.DEFINE_string("output", None, "Policy directory to write (default: DIR/policies).")
FLAGS = flags.FLAGS


def choose_bundles(store: BundleStore, step: int | None, every: bool) -> list[Bundle]:
  bundles = [b for b in store.committed() if b.problem is None]
  if not bundles:
    raise errors.RunDirError(f"{FLAGS.root_dir} has no committed checkpoint bundle to export")
  if every:
    return bundles
  if step is None:
    return bundles[-1:]
  chosen = [b for b in bundles if b.step == step]
  if not chosen:
    raise errors.ConfigError(f"no committed bundle at step {step}; committed steps are "
                             f"{[b.step for b in bundles]}")
  return chosen


def onnx_targets(store: BundleStore, policy_dir: str, step: int | None,
                 every: bool) -> tuple[list[Bundle], list[int]]:
  """(bundles to export first, steps of the exports to convert) for --format=onnx."""
  exported = sorted(e["train_step"] for e in policy_index.list_exports(policy_dir))
  if step is not None:
    return ([] if step in exported else choose_bundles(store, step, False)), [step]
  if exported:
    return [], (exported if every else exported[-1:])
  bundles = choose_bundles(store, None, every)
  return bundles, [b.step for b in bundles]


@dataclasses.dataclass
class Run:
  """A run rebuilt from its saved config: what exporting needs of it."""

  root_dir: str
  run_config: gin_config.RunConfig
  spec: Any  # trainer.loops.job.JobSpec
  env: Any  # the run's environment

  @classmethod
  def rebuild(cls, root_dir: str) -> Run:
    from trainer.cli import registry  # noqa: F401  (what configs name)
    from trainer.loops import job

    run_config = gin_config.load(root_dir, [], [])
    spec = job.configure_job(root_dir, run_config)
    return cls(root_dir, run_config, spec, spec.environment_fn())

  def new_agent(self, step_name: str) -> tuple[Any, tf.Variable]:
    """A fresh agent of the run's config, with its own train-step variable."""
    from trainer.loops import parts

    return parts.create_agent(self.spec, self.env, step_name=step_name)


def take_snapshots(store: BundleStore, bundles: list[Bundle], step: int | None, every: bool,
                   workdir: str) -> list[AgentCopy]:
  """Snapshots of the chosen bundles, taken before anything slow (building the
  agent) so that a running job's retention rarely wins the race; when it does,
  the latest is chosen again, --all skips the pruned bundle, --step=N fails."""
  for _ in range(10):
    taken = []
    try:
      for bundle in bundles:
        target = os.path.join(workdir, layout.step_name(bundle.step))
        taken.append(copy_agent(store.root_dir, bundle, target))
      return taken
    except BundleGone as gone:
      (pruned,) = gone.args
      if step is not None:
        steps = [b.step for b in store.committed() if b.problem is None]
        raise errors.RunDirError(
            f"checkpoint bundle {pruned} was deleted by the running job's retention while "
            f"being read; committed steps are now {steps}: pass one of them to --step") from gone
      logging.warning("Checkpoint bundle %d was deleted while being read (the running job "
                      "keeps its newest); trying again.", pruned)
      bundles = ([b for b in bundles if b.step > pruned] if every
                 else choose_bundles(store, None, False))
  raise errors.RunDirError("the running job deleted every bundle chosen while they were being "
                           "read; try again, or stop the job first")


def export_bundles(run: Run, snapshots: list[AgentCopy], policy_dir: str) -> list[str]:
  """Writes one export per bundle snapshot into `policy_dir`; returns their paths."""
  from trainer.checkpoint.bundle_parts import AgentPart
  from trainer.policies import exporter

  if not snapshots:
    return []
  run_config = run.run_config
  agent, train_step = run.new_agent("export_train_step")
  shadow, shadow_step = run.new_agent("export_shadow_step")
  part = AgentPart(run.root_dir, agent, train_step)
  current = {}
  writer = None
  paths = []
  try:
    for snap in snapshots:
      part.read_copy(snap.agent_prefix)
      current["metadata"] = exporter.export_metadata(
          env_steps=snap.env_steps, episodes=snap.episodes,
          eval_average_return=snap.eval_return, config_text=run_config.text)
      if writer is None:  # Built from a restored agent: its one-time models hold real weights.
        writer = exporter.PolicyExporter(
            policy_dir, live_agent=agent, shadow_agent=shadow, train_step=train_step,
            shadow_train_step=shadow_step, metadata_fn=lambda step: current["metadata"],
            retention=None)  # asked for by name: never deleted on the spot
      writer.export(snap.env_steps)
      writer.wait()
      paths.append(os.path.join(policy_dir, layout.step_name(snap.step)))
  finally:
    if writer is not None:
      writer.close()
  return paths


def sample_observations(env, count: int, seed: int = 0) -> np.ndarray:
  """Observations the policy will meet: a random-action rollout of `env`, and
  the same observations with noise of twice their spread, to reach states a
  random policy rarely visits."""
  import numpy as np
  from tf_agents.specs import array_spec

  from trainer.acting import envs

  random_state = np.random.RandomState(seed)
  envs.seed_environment(env, seed)
  observations, time_step = [], env.reset()
  while len(observations) < count // 2:
    observations.append(time_step.observation)
    time_step = (env.reset() if time_step.is_last() else
                 env.step(array_spec.sample_spec_nest(env.action_spec(), random_state)))
  seen = np.stack(observations)
  noisy = seen + random_state.normal(size=seen.shape) * 2 * (seen.std(axis=0) + 1e-3)
  spec = env.observation_spec()
  if np.issubdtype(spec.dtype, np.integer):  # pixels: in range, not wrapped around
    bounds = np.iinfo(spec.dtype)
    noisy = np.clip(np.rint(noisy), getattr(spec, "minimum", bounds.min),
                    getattr(spec, "maximum", bounds.max))
  return np.concatenate([seen, noisy]).astype(spec.dtype)


def add_onnx(run: Run, export_paths: list[str]) -> list[str]:
  """Writes `<export>/greedy.onnx` for each export; returns the files' paths."""
  import tensorflow as tf
  from tf_agents.policies import greedy_policy

  from trainer.policies import onnx_policy

  agent, _ = run.new_agent("onnx_train_step")
  greedy = greedy_policy.GreedyPolicy(agent.policy)
  targets = list(greedy.variables())
  observations = sample_observations(run.env, 512)
  written = []
  for path in export_paths:
    # The export's own greedy weights: the serving form lists them in the policy's order.
    serving = tf.saved_model.load(os.path.join(path, layout.SERVING_POLICY))
    sources = list(serving.policy_variables)
    if [v.shape for v in sources] != [v.shape for v in targets]:
      raise errors.ConfigError(f"{path} was not exported from this run's agent (its variables "
                               "differ from the config's network); export it with its own run")
    for target, source in zip(targets, sources, strict=True):
      target.assign(source)
    expected = serving.signatures["serving_default"](
        observation=tf.constant(observations))["action"].numpy()
    onnx_file = os.path.join(path, layout.ONNX_POLICY)
    onnx_policy.write_verified(greedy, onnx_file, observations, expected)
    logging.info("Wrote %s; onnxruntime matches the SavedModel on %d observations.", onnx_file,
                 len(observations))
    written.append(onnx_file)
  return written


@contextlib.contextmanager
def writing_into(policy_dir: str, root_dir: str):
  """Holds the lock of the run that `policy_dir` lies in; turns a failed write
  into one line that names a way out."""
  from trainer.policies import exporter

  run_dir = run_dir_holding(policy_dir, root_dir)
  lock = RunLock(run_dir) if run_dir else contextlib.nullcontext()
  try:
    with lock:
      yield
  except OSError as e:
    raise errors.RunDirError(
        f"cannot write the exports into {policy_dir} ({fileio.write_error_reason(e)}); free "
        "space or fix permissions, or pass --output=DIR to write them elsewhere") from e
  except exporter.ExportError as e:
    raise errors.RunDirError(f"{e}; free space or fix permissions, or pass --output=DIR to "
                             "write them elsewhere") from e
  except errors.RunDirError as e:
    cause = e.__cause__
    if isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
      raise errors.RunDirError(
          f"cannot write into the run directory {run_dir} ({cause.strerror}); pass "
          "--output=DIR to write the exports elsewhere") from e
    raise


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.root_dir:
    raise errors.ConfigError("--root_dir is required")
  if FLAGS.step is not None and FLAGS.all:
    raise errors.ConfigError("pass --step=N or --all, not both")
  if urls.is_remote(FLAGS.root_dir):
    # In a local copy of what exporting reads (markers, agent checkpoints, exports), the
    # lease held; the exports it adds are uploaded at the end (trainer.storage).
    from trainer.storage import sessions

    with sessions.writing_view(FLAGS.root_dir, _export_reads) as view:
      paths = [_remote_name(p, view) for p in export(view)]
  else:
    paths = export(FLAGS.root_dir)
  for path in paths:
    print(path)
  return 0


def _export_reads(rel: str) -> bool:
  return rel == layout.CONFIG_FILE or rel.startswith(layout.POLICY_DIR + "/")


def _remote_name(path: str, view: str) -> str:
  rel = os.path.relpath(path, view)
  return path if rel.startswith("..") else f"{urls.canonical(FLAGS.root_dir)}/{rel}"


def export(root_dir: str) -> list[str]:
  """Writes what the flags ask of the run in `root_dir`; returns the paths written."""
  if not os.path.isfile(os.path.join(root_dir, layout.CONFIG_FILE)):
    raise errors.ConfigError(f"no run at {FLAGS.root_dir} (no {layout.CONFIG_FILE}); pass the "
                             "--root_dir of a training run")
  store = BundleStore(root_dir)
  policy_dir = FLAGS.output or os.path.join(root_dir, layout.POLICY_DIR)
  workdir = tempfile.mkdtemp(prefix="trainer-export-")
  try:
    with writing_into(policy_dir, root_dir):
      if FLAGS.format == "onnx":
        bundles, steps = onnx_targets(store, policy_dir, FLAGS.step, FLAGS.all)
        snapshots = take_snapshots(store, bundles, FLAGS.step, FLAGS.all, workdir)
        run = Run.rebuild(root_dir)
        export_bundles(run, snapshots, policy_dir)
        return add_onnx(run, [os.path.join(policy_dir, layout.step_name(s)) for s in steps])
      bundles = choose_bundles(store, FLAGS.step, FLAGS.all)
      snapshots = take_snapshots(store, bundles, FLAGS.step, FLAGS.all, workdir)
      return export_bundles(Run.rebuild(root_dir), snapshots, policy_dir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def entry() -> None:
  """The command: `python -m trainer.export` calls this."""
  shell.run(main, prog="trainer.export", verbosity=logging.WARNING)
