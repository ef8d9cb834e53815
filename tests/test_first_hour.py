"""A new user's first hour: make's exit codes, quiet logs, errors that name the fix,
learning curves from a real run, collect summaries that continue across a resume."""

import os
import pathlib
import shlex
import signal
import struct
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.conftest import REPO, TINY_DQN, bindings, cli_env, committed_steps, run_train, wait_for
from trainer import errors


def _error_line(stderr: str) -> str:
  return next(line for line in stderr.splitlines() if line.startswith("trainer: error:"))


def test_make_train_names_the_trainers_exit_code_and_what_to_do(tmp_path):
  root = tmp_path / "run"
  log = tmp_path / "make.log"
  args = " ".join(f"--gin_bindings='{b}'" for b in bindings(
      TINY_DQN, train__num_iterations=10**6, train__checkpoint_interval=10**6,
      train__policy_export_interval=10**6))
  with open(log, "w") as out:
    make = subprocess.Popen(["make", "-s", "train", f"RUN={root}", f"ARGS={args}"], cwd=REPO,
                            env=cli_env(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
  try:
    wait_for(lambda: "Training from step" in log.read_text(), 120, "training to start", make)
    os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    # make exits 2 for a failed recipe, or dies of the SIGINT itself (GNU make re-raises it).
    assert make.wait(timeout=120) in (2, -signal.SIGINT)
  finally:
    if make.poll() is None:
      os.killpg(make.pid, signal.SIGKILL)
  output = log.read_text()
  hint = "make train: the trainer stopped (exit 75) after committing a checkpoint; to resume, run: "
  assert hint in output, output[-3000:]
  # The command as given, RUN and ARGS included, quoted so that the shell passes them back.
  resume = output[output.index(hint) + len(hint):].splitlines()[0]
  assert shlex.split(resume) == ["make", "train", f"RUN={root}", f"ARGS={args}"], resume
  assert committed_steps(root), "the stop committed no checkpoint"


def test_default_logs_are_quiet_and_verbosity_brings_back_the_rest(tmp_path):
  result = run_train(tmp_path / "quiet", gin_bindings=bindings(TINY_DQN))
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  # TensorFlow's own Python lines ("Assets written to ...": as INFO:tensorflow, or in absl's
  # format when TensorFlow loads after the flags are parsed) are among the noise.
  for noise in ("Unable to register", "Gym has been unmaintained", "Assets written to",
                "Could not serialize", "deprecated", "UserWarning"):
    assert not [line for line in lines if noise in line], noise
  for wanted in ("Starting ", "Training from step 0 to 60", "step 20/60", "Eval at step 30",
                 "Exported policies at step 30", "Committed checkpoint bundle at step 60",
                 "Training complete at step 60"):
    assert any(wanted in line for line in lines), wanted
  assert len(lines) <= 20, "\n".join(lines)
  verbose = run_train(tmp_path / "verbose", gin_bindings=bindings(TINY_DQN),
                      extra=["--verbosity=1"])
  assert verbose.returncode == 0
  assert "Gym has been unmaintained" in verbose.stderr
  assert "Assets written to" in verbose.stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("Box2D") is not None,
                    reason="Box2D is installed here")
def test_an_environment_whose_optional_module_is_missing_names_it(tmp_path):
  result = run_train(tmp_path / "run", gin_bindings=bindings(
      TINY_DQN, create_gym_environment__name="'LunarLander-v2'"))
  assert result.returncode == errors.EXIT_USAGE
  assert ("create_gym_environment.name='LunarLander-v2' needs the Python module 'Box2D' (pip "
          "package box2d-py), which is not installed") in _error_line(result.stderr)
  assert not (tmp_path / "run").exists()


def test_make_without_python_3_11_says_so_before_installing(tmp_path):
  for name in ("Makefile", "setup.cfg", "pyproject.toml", "setup.py", "trainer/replay/bindhost.c"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text((REPO / name).read_text())
  fake = tmp_path / "python3.10"
  fake.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.10.12" && exit 0\nexit 1\n')
  fake.chmod(0o755)
  result = subprocess.run(["make", "install", f"PYTHON={fake}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode != 0
  assert "trainer needs Python 3.11" in result.stdout + result.stderr
  assert "is Python 3.10.12" in result.stdout + result.stderr
  assert "make PYTHON=/path/to/python3.11" in result.stdout + result.stderr
  assert not (tmp_path / ".venv").exists()


def _summary_steps(root: pathlib.Path, tag: str) -> list[int]:
  steps = []
  for events in sorted((root / "train").glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(events)):
      steps += [event.step for value in event.summary.value if value.tag == tag]
  return sorted(steps)


def _png_size(path: pathlib.Path) -> tuple[int, int]:
  header = path.read_bytes()[:24]
  assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
  """Two seeds of one config, to 80 steps: one straight, one stopped at 40 and resumed."""
  base = tmp_path_factory.mktemp("curves")
  knobs = dict(TINY_DQN, **{"train.num_iterations": 80, "train.eval_interval": 20,
                            "train.checkpoint_interval": 40})
  straight, resumed = base / "seed0", base / "seed1"
  assert run_train(straight, gin_bindings=bindings(knobs)).returncode == 0
  first = run_train(resumed, gin_bindings=bindings(knobs, train__seed=1,
                                                   train__num_iterations=40))
  assert first.returncode == 0, first.stderr[-2000:]
  second = run_train(resumed, gin_files=[], gin_bindings=["train.num_iterations = 80"])
  assert second.returncode == 0, second.stderr[-2000:]
  return straight, resumed


def test_collect_summaries_continue_at_the_step_a_run_resumed_from(two_runs):
  straight, resumed = two_runs
  tag = "Metrics/collect/EnvironmentSteps"
  expected = _summary_steps(straight, tag)
  assert _summary_steps(resumed, tag) == expected  # no gap at 40, no repeat
  assert 40 in expected


def test_plot_draws_the_learning_curves_of_several_runs(two_runs, tmp_path):
  output = tmp_path / "curves.png"
  result = subprocess.run(
      [sys.executable, "-m", "trainer.plot", *(f"--root_dir={r}" for r in two_runs),
       f"--output={output}"], cwd=REPO, env=cli_env(), capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "seed0: 4 evaluations, last at step 80" in result.stdout
  assert "seed1: 4 evaluations, last at step 80" in result.stdout
  assert _png_size(output) == (1200, 450)
  alone = subprocess.run([sys.executable, "-m", "trainer.plot", f"--root_dir={two_runs[0]}"],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert alone.returncode == 0, alone.stderr[-2000:]
  assert _png_size(two_runs[0] / "eval" / "curves.png") == (1200, 450)
  header = (two_runs[0] / "eval" / "returns.csv").read_text().splitlines()[0]
  assert header == "train_step,average_return,env_steps"


def test_plot_of_a_run_without_evaluations_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "trainer.plot", f"--root_dir={tmp_path}"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
  assert result.returncode == errors.EXIT_USAGE
  assert result.stderr.strip().startswith("trainer.plot: error:")
  assert "eval/returns.csv" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_plot_of_several_runs_shows_a_run_with_one_evaluation(tmp_path):
  runs = []
  for name, row in (("a", "100,50.0,400"), ("b", "100,80.0,420")):
    (tmp_path / name / "eval").mkdir(parents=True)
    (tmp_path / name / "eval" / "returns.csv").write_text(
        f"train_step,average_return,env_steps\n{row}\n")
    runs.append(f"--root_dir={tmp_path / name}")
  output = tmp_path / "curves.png"
  result = subprocess.run([sys.executable, "-m", "trainer.plot", *runs, f"--output={output}"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  import matplotlib.image

  # The right panel (against env steps) has no legend: what is drawn there is the runs' data.
  right = matplotlib.image.imread(output)[:, 600:, :3] * 255
  red, blue = right[..., 0].astype(int), right[..., 2].astype(int)
  assert (blue - red > 50).sum() > 10, "run a (one evaluation, blue) is not drawn"
  assert (red - blue > 100).sum() > 10, "run b (one evaluation, orange) is not drawn"
