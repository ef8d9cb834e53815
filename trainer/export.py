r"""Exports policies from committed checkpoint bundles, without training.

  python -m trainer.export --root_dir=DIR [--step=N | --all] [--output=DIR/policies]

Rebuilds the run's agent from its saved config, restores the agent of each
chosen bundle and writes the same export as training does (greedy, collect and
serving SavedModels, metadata, index, TF-Agents' layout). Without --step or
--all it exports the latest bundle. Writing into the run's own policy
directory takes the run's lock: it refuses while a job runs there.
"""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import flags, logging  # noqa: E402

from trainer import cli, config, configurables, errors, exports, layout, policy_index  # noqa: E402
from trainer.bundle import Bundle, BundleStore  # noqa: E402
from trainer.run_lock import RunLock  # noqa: E402

flags.DEFINE_string("root_dir", None, "Run directory whose bundles to export.")
flags.DEFINE_integer("step", None, "Export the bundle of this train step.")
flags.DEFINE_bool("all", False, "Export every committed bundle.")
flags.DEFINE_string("output", None, "Policy directory to write (default: DIR/policies).")
FLAGS = flags.FLAGS


def choose_bundles(store: BundleStore, step: int | None, every: bool) -> list[Bundle]:
  bundles = store.committed()
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


def export_bundles(root_dir: str, bundles: list[Bundle], policy_dir: str) -> list[str]:
  """Writes one export per bundle into `policy_dir`; returns their paths."""
  run_config = config.load(root_dir, [], [])
  spec = configurables.pipeline.configure_job(root_dir, run_config)
  env = spec.environment_fn()
  agents = []
  for name in ("export_train_step", "export_shadow_step"):
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
    agents.append((spec.agent_fn(env.time_step_spec(), env.action_spec(), step_var), step_var))
  (agent, train_step), (shadow, shadow_step) = agents
  checkpoint = tf.train.Checkpoint(agent=agent, train_step=train_step)
  current = {}
  exporter = None
  paths = []
  try:
    for bundle in bundles:
      # Optimizer slots are not built here (no training): restore what exists.
      checkpoint.read(layout.agent_checkpoint_prefix(root_dir, bundle.step)).expect_partial()
      state = bundle.state()
      evals = dict((int(s), r) for s, r in state["evals"])
      current["metadata"] = exports.export_metadata(
          env_steps=state["summary"]["env_steps"], episodes=state["summary"]["episodes"],
          eval_average_return=evals.get(bundle.step), config_text=run_config.text)
      if exporter is None:  # Built from a restored agent: its one-time models hold real weights.
        exporter = exports.PolicyExporter(
            policy_dir, live_agent=agent, shadow_agent=shadow, train_step=train_step,
            shadow_train_step=shadow_step, metadata_fn=lambda step: current["metadata"],
            retention=policy_index.Retention(spec.settings.exports_keep_last,
                                             spec.settings.exports_keep_best,
                                             spec.settings.exports_keep_every))
      exporter.export(state["summary"]["env_steps"])
      exporter.wait()
      paths.append(os.path.join(policy_dir, layout.step_name(bundle.step)))
  finally:
    if exporter is not None:
      exporter.close()
  return paths


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.root_dir:
    raise errors.ConfigError("--root_dir is required")
  if FLAGS.step is not None and FLAGS.all:
    raise errors.ConfigError("pass --step=N or --all, not both")
  bundles = choose_bundles(BundleStore(FLAGS.root_dir), FLAGS.step, FLAGS.all)
  own_dir = os.path.join(FLAGS.root_dir, layout.POLICY_DIR)
  policy_dir = FLAGS.output or own_dir
  same = os.path.abspath(policy_dir) == os.path.abspath(own_dir)
  with RunLock(FLAGS.root_dir) if same else contextlib.nullcontext():
    paths = export_bundles(FLAGS.root_dir, bundles, policy_dir)
  for path in paths:
    print(path)
  return 0


if __name__ == "__main__":
  cli.run(main, prog="trainer.export", verbosity=logging.WARNING)
