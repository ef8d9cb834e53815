"""`trainer.run`, in this process as a notebook calls it: the command's guarantees,
a second call, Ctrl-C, and docs/configuration.md's custom-environment example run for real."""

import os
import re
import signal
import subprocess
import sys

import gin
import pytest
from tf_agents.environments import wrappers

import trainer
from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, committed_steps
from trainer.acting import envs
from trainer.errors import ConfigError, RunDirError
from trainer.rundir.run_lock import RunLock

TINY = bindings(TINY_DQN)


def _rows(root) -> list[str]:
  return (root / "eval" / "returns.csv").read_text().splitlines()[1:]


def test_run_completes_then_returns_at_once_refuses_changes_and_resumes(tmp_path):
  root = tmp_path / "run"
  result = trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=TINY)
  assert (result.exit_code, result.complete, result.train_step) == (0, True, 60)
  assert result.num_iterations == 60 and result.env_steps > 0
  assert result.last_eval_return is not None
  bundles, evals = committed_steps(root), _rows(root)
  assert bundles[-1] == 60 and [r.split(",")[0] for r in evals] == ["30", "60"]

  again = trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=TINY)  # gin parsed afresh
  assert again == result
  assert committed_steps(root) == bundles and _rows(root) == evals  # nothing ran

  with pytest.raises(ConfigError, match="allow_config_change"):
    trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=[*TINY, "train.seed = 7"])
  longer = [*TINY, "train.num_iterations = 80"]  # a change a resume may make
  lock = RunLock(str(root))
  lock.acquire()
  try:
    with pytest.raises(RunDirError, match="in use by"):
      trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=longer)
  finally:
    lock.release()
  resumed = trainer.run(str(root), bindings=["train.num_iterations = 80"])  # the saved config
  assert (resumed.exit_code, resumed.train_step, resumed.num_iterations) == (0, 80, 80)
  assert [r.split(",")[0] for r in _rows(root)] == ["30", "60", "80"]


# SIGINT sent by the environment itself at chosen collect steps: as Ctrl-C in a notebook.
_SIGNALS = {"steps": 0, "at": ()}


class _Interrupting(wrappers.PyEnvironmentBaseWrapper):
  def _step(self, action):
    _SIGNALS["steps"] += 1
    if _SIGNALS["steps"] in _SIGNALS["at"]:
      os.kill(os.getpid(), signal.SIGINT)
    return self._env.step(action)


@gin.configurable
def interrupting_cartpole():
  return _Interrupting(envs.create_gym_environment("CartPole-v0", max_episode_steps=50))


def test_ctrl_c_stops_with_a_bundle_a_second_interrupts_and_a_rerun_resumes(tmp_path):
  root, handler = tmp_path / "run", signal.getsignal(signal.SIGINT)
  config = [*TINY, "train.environment_fn = @interrupting_cartpole"]
  _SIGNALS.update(steps=0, at=(70,))  # in training: the initial collect is ~50 steps
  stopped = trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=config)
  assert stopped.exit_code == 75 and not stopped.complete
  assert 0 < stopped.train_step < 60 and committed_steps(root)[-1] == stopped.train_step
  assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back

  _SIGNALS.update(steps=0, at=(5, 6))
  with pytest.raises(KeyboardInterrupt):
    trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=config)
  assert signal.getsignal(signal.SIGINT) is handler

  _SIGNALS.update(steps=0, at=())
  done = trainer.run(str(root), gin_files=[DQN_CONFIG], bindings=config)  # lock released
  assert (done.exit_code, done.train_step) == (0, 60)


def test_the_configuration_guides_custom_environment_example_runs(tmp_path):
  guide = (REPO / "docs" / "configuration.md").read_text()
  section = guide[guide.index("## Python API"):]
  example = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
  assert "train.environment_fn = @line_walk" in example
  (tmp_path / "configs").symlink_to(REPO / "configs")
  (tmp_path / "example.py").write_text(example)
  out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=cli_env(),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  results = re.findall(r"RunResult\(exit_code=0, train_step=2000, .*\)", out.stdout)
  assert len(results) == 2 and results[0] == results[1], out.stdout
  assert "Starting runs/line_walk: line_walk, create_dqn_agent" in out.stderr, out.stderr[-3000:]
  assert "Already complete" in out.stderr
  assert len((tmp_path / "runs" / "line_walk" / "eval" / "returns.csv").read_text().splitlines()) == 3
