r"""Evaluates exported policies, to compare checkpoints of a run.

  python -m trainer.evaluate --root_dir=DIR [--episodes=10] [--env=CartPole-v0]
  python -m trainer.evaluate --policy=DIR/policies/0000020000 [--episodes=10]

Acts through each export's `serving/` form (TensorFlow alone, greedy actions)
in the run's environment, built from the run's saved config, or in the Gym
environment named by --env. Writes a table of average return per export as
CSV and JSON, and a PNG plot of average return against train step, to
--output (default: DIR/eval/exports.{csv,json,png}).
"""

import csv
import json
import os

from trainer.cli import quiet  # noqa: E402  (first: before TensorFlow and Gym load)

quiet.before_imports()

from absl import flags, logging  # noqa: E402

from trainer import errors  # noqa: E402
from trainer.cli import shell  # noqa: E402
from trainer.config import gin_config  # noqa: E402
from trainer.policies import policy_index  # noqa: E402
from trainer.rundir import layout  # noqa: E402
from trainer.storage import urls  # noqa: E402

flags.DEFINE_string("policy", None, "One export directory (DIR/policies/<step>).")
flags.DEFINE_string("root_dir", None, "A run directory (a path or gs://BUCKET/PATH): evaluates "
                    "every export in its index.")
flags.DEFINE_integer("episodes", 10, "Episodes per export.")
flags.DEFINE_string("env", None, "Gym id to evaluate in (default: the run's environment).")
flags.DEFINE_integer("seed", 0, "Seeds the environment.")
flags.DEFINE_string("output", None, "Output path prefix (default: DIR/eval/exports).")
FLAGS = flags.FLAGS


def run_episodes(serve, env, episodes: int) -> list[float]:
  """Returns of `episodes` episodes with the serving signature's actions."""
  import numpy as np
  import tensorflow as tf

  returns = []
  for _ in range(episodes):
    time_step, total = env.reset(), 0.0
    while not time_step.is_last():
      observation = tf.constant(np.expand_dims(time_step.observation, 0))
      action = serve(observation=observation)["action"].numpy()[0]
      time_step = env.step(action)
      total += float(time_step.reward)
    returns.append(total)
  return returns


def evaluate_exports(export_paths: list[str], env, episodes: int) -> list[dict]:
  import numpy as np
  import tensorflow as tf

  rows = []
  for path in export_paths:
    serve = tf.saved_model.load(os.path.join(path, layout.SERVING_POLICY)).signatures[
        "serving_default"]
    returns = run_episodes(serve, env, episodes)
    rows.append({"train_step": int(os.path.basename(os.path.normpath(path))), "path": path,
                 "average_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                 "min_return": min(returns), "max_return": max(returns), "episodes": episodes})
    logging.info("%s: average return %.2f over %d episodes", path, rows[-1]["average_return"],
                 episodes)
  return rows


def merged_rows(rows: list[dict], prefix: str) -> list[dict]:
  """`rows` merged into the table already at `prefix` (its JSON), by train step: the
  steps evaluated now are replaced, the others kept (evaluating one export must not
  lose the rest)."""
  try:
    with open(prefix + ".json") as f:
      table = json.load(f)
    by_step = {int(row["train_step"]): row for row in table if set(row) == set(rows[0])}
  except (OSError, ValueError, TypeError, KeyError):
    by_step = {}  # no table yet (or not one of ours): this one starts it
  by_step.update({row["train_step"]: row for row in rows})
  return [by_step[step] for step in sorted(by_step)]


def write_outputs(rows: list[dict], prefix: str, title: str) -> None:
  import numpy as np

  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with open(prefix + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(prefix + ".json", "w") as f:
    json.dump(rows, f, indent=2)
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  steps = [r["train_step"] for r in rows]
  mean = np.array([r["average_return"] for r in rows])
  std = np.array([r["std_return"] for r in rows])
  lowest = np.array([r["min_return"] for r in rows])
  highest = np.array([r["max_return"] for r in rows])
  fig, ax = plt.subplots(figsize=(8, 4.5))
  ax.plot(steps, mean, marker="o", label="average return")
  # ±1 std, never past the returns seen (a band above the environment's maximum misleads).
  ax.fill_between(steps, np.maximum(mean - std, lowest), np.minimum(mean + std, highest),
                  alpha=0.25, label="±1 std (within the lowest and highest return)")
  ax.plot(steps, lowest, linestyle=":", color="gray", linewidth=1, label="lowest, highest")
  ax.plot(steps, highest, linestyle=":", color="gray", linewidth=1)
  # The whole scale from zero (or the lowest return): a zoom on the top of it magnifies noise.
  bottom, top = min(0.0, float(lowest.min())), max(0.0, float(highest.max()))
  margin = 0.05 * (top - bottom or 1.0)
  ax.set_ylim(bottom - margin, top + margin)
  ax.set_xlabel("train step of the export")
  ax.set_ylabel(f"return over {rows[0]['episodes']} episodes")
  ax.set_title(title)
  ax.legend(fontsize=8, loc="lower right")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(prefix + ".png", dpi=100)
  plt.close(fig)


def _root_of(policy_path: str) -> str | None:
  """DIR for DIR/policies/<step>, if the path has that shape."""
  parent = os.path.dirname(os.path.abspath(os.path.normpath(policy_path)))
  return os.path.dirname(parent) if os.path.basename(parent) == layout.POLICY_DIR else None


def _environment(root_dir: str | None):
  """The environment to evaluate in, seeded (loads TensorFlow and Gym)."""
  from trainer.acting import envs
  from trainer.cli import registry  # noqa: F401  (what configs name)
  from trainer.loops import job

  if FLAGS.env:
    env = envs.create_gym_environment(FLAGS.env)
  elif root_dir is None or not os.path.isfile(os.path.join(root_dir, layout.CONFIG_FILE)):
    raise errors.ConfigError("cannot tell which environment to use: pass --env=<Gym id>")
  else:
    env = job.configure_job(root_dir, gin_config.load(root_dir, [], [])).environment_fn()
  envs.seed_environment(env, FLAGS.seed)
  return env


def main(argv: list[str]) -> int:
  del argv
  if bool(FLAGS.policy) == bool(FLAGS.root_dir):
    raise errors.ConfigError("pass exactly one of --policy=EXPORT_DIR or --root_dir=DIR")
  if FLAGS.root_dir and urls.is_remote(FLAGS.root_dir):
    # A local copy of the run's config and exports; the results are uploaded beside them.
    from trainer.storage import sessions

    with sessions.reading_view(FLAGS.root_dir, _evaluate_reads) as view:
      return evaluate_run(view.path, view.run.url, view.publish)
  if FLAGS.root_dir:
    return evaluate_run(FLAGS.root_dir, FLAGS.root_dir)
  if not os.path.isdir(os.path.join(FLAGS.policy, layout.SERVING_POLICY)):
    raise errors.ConfigError(f"{FLAGS.policy} is not an export (no {layout.SERVING_POLICY}/ in it)")
  return evaluate_paths(_root_of(FLAGS.policy), [FLAGS.policy], FLAGS.policy)


def _evaluate_reads(rel: str) -> bool:
  return rel == layout.CONFIG_FILE or rel.startswith(layout.POLICY_DIR + "/")


def evaluate_run(root: str, shown: str, publish=None) -> int:
  """Evaluates every export of the run in `root` (named `shown` to the user)."""
  paths = [e["path"] for e in policy_index.list_exports(os.path.join(root, layout.POLICY_DIR))]
  if not paths:
    raise errors.ConfigError(f"{shown} has no exports to evaluate")
  return evaluate_paths(root, paths, os.path.basename(os.path.normpath(shown)), publish)


def evaluate_paths(root: str | None, paths: list[str], run_name: str, publish=None) -> int:
  env = _environment(root)
  evaluated = evaluate_exports(paths, env, FLAGS.episodes)
  prefix = FLAGS.output or os.path.join(root or ".", layout.EVAL_DIR, "exports")
  rows = merged_rows(evaluated, prefix)
  env_name = FLAGS.env or gin_config.saved_environment_name(root) or "its environment"
  write_outputs(rows, prefix, f"Exported policies of {run_name} in {env_name} (greedy, "
                f"{FLAGS.episodes} episodes each)")
  print(f"{'train_step':>10}  {'average_return':>14}  {'std':>7}  {'min':>8}  {'max':>8}")
  for row in evaluated:
    print(f"{row['train_step']:>10}  {row['average_return']:>14.2f}  {row['std_return']:>7.2f}  "
          f"{row['min_return']:>8.2f}  {row['max_return']:>8.2f}")
  written = [f"{prefix}.{ext}" for ext in ("csv", "json", "png")]
  if publish is not None and not FLAGS.output:
    written = [publish(path) for path in written]
  print(f"wrote {', '.join(written)}")
  return 0


def entry() -> None:
  """The command: `python -m trainer.evaluate` calls this."""
  shell.run(main, prog="trainer.evaluate", verbosity=logging.WARNING)
