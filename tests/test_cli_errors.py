"""Bad command lines: one clear line, a non-zero exit, the run directory untouched."""

import os
import pathlib

import pytest

from tests.conftest import DQN_CONFIG, TINY_DQN, bindings, run_train
from trainer import errors


def _tree(root: pathlib.Path) -> dict:
  """Every path under root with its size and mtime: any change shows."""
  if not root.exists():
    return {}
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _error_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.startswith("trainer: error:")]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0]


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli") / "run"
  result = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=20))
  assert result.returncode == 0, result.stderr
  return root


def _write(tmp_path, name, text) -> str:
  path = tmp_path / name
  path.write_text(text)
  return str(path)


CASES = {
    "missing gin file": (lambda tmp: ["/nonexistent/x.gin"], [], "gin file not found"),
    "gin syntax error": (lambda tmp: [_write(tmp, "bad.gin", "train.num_iterations = (\n")], [],
                         "bad gin config"),
    "unknown configurable": (lambda tmp: [DQN_CONFIG], ["no_such_thing.x = 1"],
                             "No configurable matching 'no_such_thing'"),
    "unknown parameter": (lambda tmp: [DQN_CONFIG], ["train.no_such_knob = 1"],
                          "doesn't have a parameter named 'no_such_knob'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_one_clear_line_and_touches_nothing(tmp_path, existing_run, case):
  files_fn, extra_bindings, message = CASES[case]
  before = _tree(existing_run)
  result = run_train(existing_run, gin_files=files_fn(tmp_path), gin_bindings=extra_bindings)
  assert result.returncode == errors.EXIT_USAGE
  assert message in _error_line(result.stderr)
  assert _tree(existing_run) == before


def test_root_dir_that_is_a_file(tmp_path):
  target = tmp_path / "file"
  target.write_text("not a directory")
  result = run_train(target)
  assert result.returncode == errors.EXIT_USAGE
  assert "is not a directory" in _error_line(result.stderr)
  assert target.read_text() == "not a directory"


def test_unwritable_root_dir(tmp_path):
  if os.geteuid() == 0:
    target = pathlib.Path("/sys/trainer-test-run")  # sysfs refuses new entries even to root
  else:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    target = locked / "run"
  result = run_train(target)
  assert result.returncode == errors.EXIT_USAGE
  assert "is not writable" in _error_line(result.stderr)
  assert not target.exists()


def test_resume_without_saved_config_or_gin_file(tmp_path):
  result = run_train(tmp_path / "empty", gin_files=[])
  assert result.returncode == errors.EXIT_USAGE
  assert "--gin_file" in _error_line(result.stderr)
  assert not (tmp_path / "empty").exists()


def test_changed_experiment_is_refused_with_a_diff(existing_run):
  before = _tree(existing_run)
  result = run_train(existing_run, gin_bindings=bindings(
      TINY_DQN, train__num_iterations=20, create_dqn_agent__learning_rate=0.5))
  assert result.returncode == errors.EXIT_USAGE
  line = _error_line(result.stderr)
  assert "create_dqn_agent.learning_rate: 0.002 -> 0.5" in line
  assert "--allow_config_change" in line
  assert _tree(existing_run) == before


def test_resume_with_root_dir_alone_uses_the_saved_config(existing_run):
  result = run_train(existing_run, gin_files=[])
  assert result.returncode == 0, result.stderr
  assert "Already complete" in result.stderr


BUILD_CASES = {
    "wrong value type": (["train.num_iterations = 'many'"], "train.num_iterations must be an int"),
    "zero interval": (["train.checkpoint_interval = 0"], "train.checkpoint_interval must be > 0"),
    "negative interval": (["train.eval_interval = -5"], "train.eval_interval must be >= 0"),
    "capacity below a batch": (["create_uniform_replay.capacity = 4", "train.batch_size = 8"],
                               "exceeds the replay capacity"),
    "collect steps not a multiple of the environments": (
        ["train.collect_envs = 3", "train.collect_steps_per_iteration = 10"],
        "must be a multiple of train.collect_envs=3"),
}


@pytest.mark.parametrize("case", sorted(BUILD_CASES))
def test_bad_value_is_one_clear_line_and_touches_nothing(tmp_path, existing_run, case):
  extra, message = BUILD_CASES[case]
  root = tmp_path / "new_run"
  result = run_train(root, gin_bindings=bindings(TINY_DQN) + extra)
  assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
  assert message in _error_line(result.stderr)
  assert not root.exists()
  # On an existing run: refused too (as a bad value, or as a change of the experiment).
  before = _tree(existing_run)
  result = run_train(existing_run, gin_bindings=bindings(TINY_DQN, train__num_iterations=20) + extra)
  assert result.returncode == errors.EXIT_USAGE
  _error_line(result.stderr)
  assert _tree(existing_run) == before
