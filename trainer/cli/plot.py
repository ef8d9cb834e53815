r"""Learning curves from the evaluations made during training, for one run or several.

  python -m trainer.plot --root_dir=runs/a [--root_dir=runs/b ...] [--output=curves.png]

Reads each run's `eval/returns.csv` (the greedy evaluations of
`train.eval_interval`) and draws the average return against train steps and
against environment steps. With several runs (seeds of one config, say) each
run is a thin line and, against train steps, their mean is a thick one with
the range of the runs (lowest to highest) shaded. Reads only: safe beside a
live job. Without --output the picture goes to ROOT/eval/curves.png for one
run, ./curves.png for several.
"""

import contextlib
import os
import sys

from absl import flags

from trainer.cli import shell
from trainer.config import gin_config
from trainer.errors import ConfigError
from trainer.rundir import evals, layout
from trainer.storage import urls

flags.DEFINE_multi_string("root_dir", [], "A run directory (a path or gs://BUCKET/PATH); repeat for "
                          "several runs.")
flags.DEFINE_string("output", None, "PNG path (default: ROOT/eval/curves.png, or ./curves.png).")
FLAGS = flags.FLAGS


def read_returns(root_dir: str, shown: str | None = None) -> list[dict]:
  """The run's evaluations (`trainer.rundir.evals.read`); refuses a run without any."""
  shown = shown or root_dir
  path = os.path.join(root_dir, layout.EVAL_RETURNS_FILE)
  if not os.path.isfile(path):
    raise ConfigError(f"{shown} has no {layout.EVAL_RETURNS_FILE} (no evaluation yet, or "
                      "train.eval_interval = 0); pass the --root_dir of a run that evaluated")
  rows = evals.read(root_dir)
  if not rows:
    raise ConfigError(f"{shown}/{layout.EVAL_RETURNS_FILE} holds no evaluation yet; wait for "
                      "the first one")
  return rows


def plot(runs: dict[str, list[dict]], title: str, output: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  fig, (by_step, by_env) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  many = len(runs) > 1
  for name, rows in runs.items():
    steps = [r["train_step"] for r in rows]
    returns = [r["average_return"] for r in rows]
    # Markers in either case: a run with one evaluation is a point, which a line cannot draw.
    style = ({"linewidth": 1, "alpha": 0.6, "marker": "o", "markersize": 4} if many else
             {"linewidth": 2, "marker": "o", "markersize": 3})
    by_step.plot(steps, returns, label=name, **style)
    counted = [r for r in rows if r["env_steps"] is not None]
    if counted:
      by_env.plot([r["env_steps"] for r in counted], [r["average_return"] for r in counted],
                  label=name, **style)
  if many:  # the mean over the runs at the steps they all evaluated, and their range
    common = sorted(set.intersection(*({r["train_step"] for r in rows} for rows in runs.values())))
    if common:
      table = np.array([[{r["train_step"]: r["average_return"] for r in rows}[s] for s in common]
                        for rows in runs.values()])
      by_step.plot(common, table.mean(axis=0), color="black", linewidth=2.5, marker="o",
                   markersize=5, label=f"mean of {len(runs)} runs")
      by_step.fill_between(common, table.min(axis=0), table.max(axis=0), color="gray", alpha=0.2,
                           label="range of the runs")
  # The whole scale from zero (or the lowest return): a zoom on the top of it magnifies noise.
  every = [r["average_return"] for rows in runs.values() for r in rows]
  bottom, top = min(0.0, min(every)), max(0.0, max(every))
  margin = 0.05 * (top - bottom or 1.0)
  by_step.set_ylim(bottom - margin, top + margin)  # shared with by_env
  by_step.set_xlabel("train step")
  by_env.set_xlabel("environment steps (collect)")
  by_step.set_ylabel("average return of the greedy policy")
  for ax in (by_step, by_env):
    ax.grid(alpha=0.3)
  by_step.legend(fontsize=8, loc="lower right")
  fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=100)
  plt.close(fig)


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; pass runs with --root_dir=DIR")
  if not FLAGS.root_dir:
    raise ConfigError("--root_dir is required: pass --root_dir=DIR (repeat it for several runs)")
  with contextlib.ExitStack() as stack:
    local, publish = [], None
    for root in FLAGS.root_dir:
      if urls.is_remote(root):  # its config and evaluations, copied here
        from trainer.storage import sessions

        view = stack.enter_context(sessions.reading_view(root, _plot_reads))
        local.append(view.path)
        publish = publish or (view.publish if root == FLAGS.root_dir[0] else None)
      else:
        local.append(root)
    return plot_runs(FLAGS.root_dir, local, publish)


def _plot_reads(rel: str) -> bool:
  return rel in (layout.CONFIG_FILE, layout.EVAL_RETURNS_FILE)


def plot_runs(shown: list[str], local: list[str], publish=None) -> int:
  """Plots the runs in `local` (named as `shown`); `publish` uploads a picture written
  into the first run's directory (a gs:// run's)."""
  runs = {}
  for root, path in zip(shown, local, strict=True):
    name = os.path.basename(os.path.normpath(root))
    runs[name if name not in runs else root] = read_returns(path, root)
  environments = sorted({gin_config.saved_environment_name(path) or "?" for path in local})
  title = (f"{', '.join(environments)}: {', '.join(runs)}" if len(runs) <= 4 else
           f"{', '.join(environments)}: {len(runs)} runs")
  output = FLAGS.output or (os.path.join(local[0], layout.EVAL_DIR, "curves.png")
                            if len(runs) == 1 else "curves.png")
  plot(runs, f"Evaluations during training — {title}", output)
  for name, rows in runs.items():
    last = rows[-1]
    sys.stdout.write(f"{name}: {len(rows)} evaluations, last at step {last['train_step']}: "
                     f"{last['average_return']:.2f}\n")
  if publish is not None and not FLAGS.output and len(runs) == 1:
    output = publish(output)
  sys.stdout.write(f"wrote {output}\n")
  return 0


def entry() -> None:
  """The command: `python -m trainer.plot` calls this."""
  shell.run(main, prog="trainer.plot")
