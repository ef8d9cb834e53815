r"""`python -m trainer.report`: a sweep's table and plots, with honest statistics.

  python -m trainer.report --root_dir=sweeps/NAME [--target=195] [--reps=2000]

Per configuration: the IQM of its members' final and best greedy evaluations
with 95 % stratified bootstrap confidence intervals (rliable), env steps to
--target, and members complete / failed; IQM curves against env steps and a
performance profile of the final evaluations. Writes ROOT/report/report.md
(and prints it), report.csv, report.json, curves.png and profile.png. Reads
only: it runs beside a live sweep and names the members not complete yet.
"""

import os
import sys

from absl import flags

from trainer.cli import shell
from trainer.errors import EXIT_OK, ConfigError
from trainer.storage import urls
from trainer.sweeps import definition as definition_lib
from trainer.sweeps import report

flags.DEFINE_string("root_dir", None, "Sweep directory (trainer.sweep's --root_dir: a path or gs://).")
flags.DEFINE_float("target", None, "A return to reach: adds env steps to it per configuration.")
flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per interval.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; pass --root_dir=SWEEP_DIR")
  if not FLAGS.root_dir:
    raise ConfigError("--root_dir is required: pass the sweep's directory, --root_dir=sweeps/NAME")
  if FLAGS.reps < 100:
    raise ConfigError(f"--reps must be >= 100 (bootstrap resamples), got {FLAGS.reps}")
  if urls.is_remote(FLAGS.root_dir):
    from trainer.storage import sessions

    with sessions.sweep_view(FLAGS.root_dir) as view:
      written = write_report(view.path, view.run.url)
      return _done([view.publish(path) for path in written])
  return _done(write_report(FLAGS.root_dir, FLAGS.root_dir))


def _done(written: list[str]) -> int:
  sys.stdout.write(f"wrote {', '.join(written)}\n")
  return EXIT_OK


def write_report(root: str, shown: str) -> list[str]:
  """Writes the report of the sweep in `root` (named `shown`) into its report/; returns
  the files written."""
  definition = definition_lib.load(root)
  if definition is None:
    raise ConfigError(f"{shown} holds no {definition_lib.DEFINITION_FILE}: pass the --root_dir "
                      "of a trainer.sweep")
  members = report.collect(root, definition)
  if not any(m.evals for m in members):
    raise ConfigError(f"no member of {shown} has evaluated yet (eval/returns.csv); wait for the "
                      "first evaluations, or check train.eval_interval")
  rows = report.summarize(definition, members, FLAGS.target, FLAGS.reps)
  out = os.path.join(root, definition_lib.REPORT_DIR)
  os.makedirs(out, exist_ok=True)
  title = f"{os.path.basename(os.path.normpath(shown))}: " + ", ".join(
      os.path.basename(path) for path, _ in definition.gin_files)
  text = report.markdown(rows, FLAGS.target, FLAGS.reps)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(f"# {title}\n\n{text}\n![curves](curves.png)\n\n![profile](profile.png)\n")
  report.write_csv(os.path.join(out, "report.csv"), rows)
  report.write_json(os.path.join(out, "report.json"), rows, members)
  report.plot_curves(os.path.join(out, "curves.png"), definition, members, FLAGS.reps, title)
  profiled = report.plot_profile(os.path.join(out, "profile.png"), definition, members,
                                 FLAGS.reps, title)
  sys.stdout.write(text)
  if not profiled:
    sys.stdout.write("(no profile: no member complete)\n")
  return [os.path.join(out, name) for name in
          ("report.md", "report.csv", "report.json", "curves.png",
           *(["profile.png"] if profiled else []))]


def entry() -> None:
  shell.run(main, prog="trainer.report")
