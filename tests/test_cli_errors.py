"""Bad command lines: one clear line, a non-zero exit, the run directory untouched."""

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, run_train, status
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
    "misspelt knob": (lambda tmp: [DQN_CONFIG], ["train.num_iteration = 1"],
                      "did you mean train.num_iterations?"),
    "misspelt configurable": (lambda tmp: [DQN_CONFIG], ["create_dqn_agnet.learning_rate = 0.1"],
                              "No configurable matching 'create_dqn_agnet'; did you mean "
                              "create_dqn_agent? (In bindings string line 1"),
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


def _unwritable(tmp_path, name: str) -> pathlib.Path:
  """A path nobody may create, root included."""
  if os.geteuid() == 0:
    return pathlib.Path(f"/sys/trainer-test-{name}")  # sysfs refuses new entries even to root
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  return locked / name


def test_unwritable_root_dir(tmp_path):
  target = _unwritable(tmp_path, "run")
  result = run_train(target)
  assert result.returncode == errors.EXIT_USAGE
  assert "is not writable" in _error_line(result.stderr)
  assert not target.exists()


def test_resume_without_saved_config_or_gin_file(tmp_path):
  result = run_train(tmp_path / "empty", gin_files=[])
  assert result.returncode == errors.EXIT_USAGE
  assert "--gin_file" in _error_line(result.stderr)
  assert not (tmp_path / "empty").exists()


def test_changed_experiment_is_refused_with_a_diff_and_the_flag_then_works(tmp_path):
  root = tmp_path / "run"
  assert run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=20)).returncode == 0
  before = _tree(root)
  changed = bindings(TINY_DQN, train__num_iterations=40, create_dqn_agent__learning_rate=0.5,
                     create_gym_environment__max_episode_steps=40)
  result = run_train(root, gin_bindings=changed)
  assert result.returncode == errors.EXIT_USAGE
  assert "listed below" in _error_line(result.stderr) and "--allow_config_change" in result.stderr
  diff = result.stderr[result.stderr.index("trainer: error:"):].splitlines()[1:]
  # One change a line, the environment's first; the benign num_iterations is not refused.
  assert diff == ["  create_gym_environment.max_episode_steps: 50 -> 40",
                  "  create_dqn_agent.learning_rate: 0.002 -> 0.5"]
  assert _tree(root) == before
  assert "Config change accepted" not in result.stderr  # refused: not logged as accepted
  result = run_train(root, gin_bindings=changed, extra=["--allow_config_change"])
  assert result.returncode == 0, result.stderr[-2000:]
  assert status(root)["train_step"] == 40
  assert "Config change accepted: create_dqn_agent.learning_rate: 0.002 -> 0.5" in result.stderr


@pytest.mark.parametrize("change,part", [
    ({"create_dqn_agent__fc_layer_params": "(32,)"},
     r"the agent's agent/_q_network/\S+ is \[(4, )?16\] in the bundle but \[(4, )?32\] now"),
    ({"create_uniform_replay__capacity": 3000},
     "its replay was saved with the old create_uniform_replay.capacity"),
])
def test_a_change_that_cannot_restore_is_refused_without_suggesting_the_flag(existing_run, change,
                                                                            part):
  before = _tree(existing_run)
  for extra in ([], ["--allow_config_change"]):  # the flag cannot make it restore either
    result = run_train(existing_run, gin_bindings=bindings(TINY_DQN, train__num_iterations=20,
                                                           **change), extra=extra)
    assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
    line = _error_line(result.stderr)
    assert re.search(part, line), line
    assert "cannot be restored into the changed config" in line
    assert "--allow_config_change" not in result.stderr
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
    "negative seed": (["train.seed = -5"], "train.seed must be >= 0"),
    "replay larger than the machine": (["create_uniform_replay.capacity = 100000000000"],
                                       "GiB of memory; lower the capacity"),
    "reverb table beyond its limit": (["train.replay_fn = @create_reverb_replay",
                                       "create_reverb_replay.capacity = 100000000000000"],
                                      "create_reverb_replay.capacity must be at most"),
    "negative episode limit": (["create_gym_environment.max_episode_steps = -3"],
                               "max_episode_steps must be a positive int"),
    "infinite learning rate": (["create_dqn_agent.learning_rate = 1e999"],
                               "learning_rate must be a positive finite number"),
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


def test_root_dir_that_is_a_dangling_link(tmp_path):
  link = tmp_path / "run"
  link.symlink_to(tmp_path / "gone")
  result = run_train(link, gin_bindings=bindings(TINY_DQN))
  assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
  assert "does not exist" in _error_line(result.stderr)
  assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_status_of_a_directory_without_a_run(tmp_path):
  for root in (tmp_path / "nothing", tmp_path):
    out = subprocess.run([sys.executable, "-m", "trainer.status", f"--root_dir={root}"], cwd=REPO,
                         env=cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == errors.EXIT_USAGE
    assert out.stderr.startswith(f"trainer.status: error: no run at {root}"), out.stderr


def test_export_into_an_unwritable_place_is_one_line(existing_run, tmp_path):
  target = _unwritable(tmp_path, "policies")
  before = _tree(existing_run)
  out = subprocess.run([sys.executable, "-m", "trainer.export", f"--root_dir={existing_run}",
                        f"--output={target}"], cwd=REPO, env=cli_env(), capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == errors.EXIT_RUN_DIR, out.stderr[-3000:]
  lines = [x for x in out.stderr.splitlines() if x.startswith("trainer.export: error:")]
  assert len(lines) == 1 and "cannot write the exports" in lines[0] and "--output" in lines[0]
  assert "Traceback" not in out.stderr
  assert _tree(existing_run) == before


def test_diverging_training_names_the_setting_and_keeps_the_bundle(existing_run, tmp_path):
  root = tmp_path / "run"
  shutil.copytree(existing_run, root)
  marker = root / "train/bundles/0000000020/COMMITTED"
  manifest = marker.read_text()
  result = run_train(root, gin_bindings=bindings(
      TINY_DQN, train__num_iterations=60, create_dqn_agent__reward_scale_factor=1e38),
      extra=["--allow_config_change"])
  assert result.returncode == errors.EXIT_CRASH, result.stderr[-3000:]
  line = _error_line(result.stderr)
  assert "training diverged" in line and "reward_scale_factor" in line and "bundle 20" in line
  assert "Traceback" not in result.stderr
  assert sorted(p.name for p in (root / "train/bundles").iterdir()) == ["0000000020"]
  assert marker.read_text() == manifest
  # The way out the line names works: a sane setting, resumed with --allow_config_change.
  fixed = run_train(root, gin_bindings=bindings(
      TINY_DQN, train__num_iterations=60, create_dqn_agent__reward_scale_factor=1.0),
      extra=["--allow_config_change"])
  assert fixed.returncode == 0, fixed.stderr[-3000:]
  assert "Resumed from step 20" in fixed.stderr


# Every command, with what its own required flags need, and how its error lines start.
COMMANDS = {"trainer.train": ("trainer", []), "trainer.launch": ("trainer.launch", []),
            "trainer.replay_server": ("trainer.replay_server", []),
            "trainer.collect": ("trainer.collect", ["--task=0"]),
            "trainer.learn": ("trainer.learn", []), "trainer.evaluate": ("trainer.evaluate", []),
            "trainer.export": ("trainer.export", []), "trainer.status": ("trainer.status", []),
            "trainer.plot": ("trainer.plot", [])}


def _cli(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env or cli_env(),
                        capture_output=True, text=True, timeout=120)


def _without_tensorflow(tmp_path) -> dict:
  """cli_env() where importing TensorFlow, TF-Agents or Reverb fails: a command that
  checks its command line before the heavy imports still gives its one line."""
  fake = tmp_path / "unimportable"
  for name in ("tensorflow", "tf_agents", "reverb"):
    (fake / name).mkdir(parents=True)
    (fake / name / "__init__.py").write_text(f"raise ImportError('{name} loaded too early')\n")
  env = cli_env()
  env["PYTHONPATH"] = f"{fake}{os.pathsep}{env['PYTHONPATH']}"
  return env


def _only_line(result: subprocess.CompletedProcess, prog: str) -> str:
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr[-3000:]
  return lines[0].removeprefix(f"{prog}: error: ")


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_an_unknown_flag_is_one_line_naming_the_gin_binding_before_tensorflow(tmp_path, module):
  prog, extra = COMMANDS[module]
  root = tmp_path / "run"
  result = _cli(module, f"--root_dir={root}", *extra, "--num_iterations=1000",
                env=_without_tensorflow(tmp_path))
  assert result.returncode == errors.EXIT_USAGE
  assert _only_line(result, prog) == (
      "unknown flag --num_iterations: hyperparameters are gin bindings: use "
      "--gin_bindings='train.num_iterations=1000'")
  assert not root.exists()


@pytest.mark.parametrize("module,own", [
    ("trainer.train", ["--root_dir", "--gin_file", "--gin_bindings", "--[no]allow_config_change"]),
    ("trainer.launch", ["--root_dir", "--gin_bindings", "--collectors"]),
    ("trainer.replay_server", ["--root_dir", "--port", "--host"]),
    ("trainer.collect", ["--task", "--replay_address"]),
    ("trainer.learn", ["--replay_address", "--[no]allow_config_change"]),
    ("trainer.evaluate", ["--policy", "--episodes", "--env"]),
    ("trainer.export", ["--step", "--format", "--output"]),
    ("trainer.status", ["--root_dir", "--[no]json"]),
    ("trainer.plot", ["--root_dir", "--output"]),
])
def test_help_lists_the_commands_own_flags(tmp_path, module, own):
  result = _cli(module, "--help", env=_without_tensorflow(tmp_path))
  assert result.returncode == 0, result.stderr[-2000:]
  for flag in own:
    assert f"  {flag}:" in result.stdout, result.stdout


@pytest.mark.parametrize("module,args,message", [
    ("trainer.launch", ["--collectors=abc"], "--collectors=abc must be an int; see python -m "
     "trainer.launch --help"),
    ("trainer.export", ["--format=tflite"], "--format=tflite must be one of saved_model, onnx"),
    ("trainer.collect", [], "--task is required (This collector's number, 0 to N-1): pass "
     "--task=..."),
    ("trainer.train", ["--root-dir=x"], "unknown flag --root-dir; did you mean --root_dir?"),
])
def test_a_bad_flag_value_is_one_line(tmp_path, module, args, message):
  root = tmp_path / "run"
  result = _cli(module, f"--root_dir={root}", f"--gin_file={DQN_CONFIG}", *args,
                env=_without_tensorflow(tmp_path))
  assert result.returncode == errors.EXIT_USAGE
  assert message in _only_line(result, COMMANDS[module][0])
  assert not root.exists()


def _suggested_bindings(line: str) -> list[str]:
  """The --gin_bindings flags an error line suggests, as a shell would pass them."""
  return [arg for arg in shlex.split(line.split(": use ")[-1].split("per --gin_bindings flag: ")
                                     [-1].split("quote a string: ")[-1])
          if arg.startswith("--gin_bindings=")]


def test_the_binding_an_unknown_flag_suggests_works(tmp_path):
  root = tmp_path / "run"
  result = run_train(root, gin_bindings=bindings(TINY_DQN), extra=["--num_iterations=20"])
  assert result.returncode == errors.EXIT_USAGE
  suggested = _suggested_bindings(_error_line(result.stderr))
  assert suggested == ["--gin_bindings=train.num_iterations=20"]
  assert not root.exists()
  fixed = run_train(root, gin_bindings=bindings(TINY_DQN), extra=suggested)
  assert fixed.returncode == 0, fixed.stderr[-3000:]
  assert status(root)["train_step"] == 20


def test_gins_two_common_slips_name_the_fix_and_the_fix_works(tmp_path):
  root = tmp_path / "run"
  fixes = []
  for slip, message in [
      ("create_gym_environment.name=CartPole-v0",
       "CartPole-v0 is not a Python value; quote a string: "
       "--gin_bindings=\"create_gym_environment.name='CartPole-v0'\""),
      ("train.seed=1 train.num_iterations=20",
       "holds 2 bindings; pass one binding per --gin_bindings flag: "
       "--gin_bindings='train.seed=1' --gin_bindings='train.num_iterations=20'")]:
    result = run_train(root, gin_bindings=bindings(TINY_DQN) + [slip])
    assert result.returncode == errors.EXIT_USAGE
    line = _error_line(result.stderr)
    assert message in line and "0x" not in result.stderr, result.stderr[-2000:]
    fixes += _suggested_bindings(line)
  assert not root.exists()
  fixed = run_train(root, gin_bindings=bindings(TINY_DQN), extra=fixes)
  assert fixed.returncode == 0, fixed.stderr[-3000:]
  assert status(root)["train_step"] == 20


ROLE_SETTINGS = {
    "replay_shards.shards = 0": "replay_shards.shards must be an int from 1 to the replay's "
                                "capacity, got 0",
    "rate_control.samples_per_insert = -1": "rate_control.samples_per_insert must be a positive "
                                            "number, got -1",
    "mirrored_strategy.logical_cpus = 'two'": "mirrored_strategy.logical_cpus must be an int >= 0, "
                                              "got 'two'",
}


@pytest.mark.parametrize("binding", sorted(ROLE_SETTINGS))
def test_a_bad_roles_setting_is_refused_by_train_and_launch_before_anything(tmp_path, existing_run,
                                                                          binding):
  env = _without_tensorflow(tmp_path)  # launch refuses it itself, and train before loading TF
  for module, root in (("trainer.train", tmp_path / "new"), ("trainer.launch", tmp_path / "new"),
                       ("trainer.launch", existing_run)):
    before = _tree(root)
    result = _cli(module, f"--root_dir={root}", f"--gin_file={DQN_CONFIG}",
                  f"--gin_bindings={binding}", env=env)
    assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
    assert _only_line(result, COMMANDS[module][0]) == ROLE_SETTINGS[binding]
    assert _tree(root) == before  # no roles/ either


@pytest.mark.parametrize("binding", sorted(ROLE_SETTINGS))
def test_loading_a_config_checks_the_roles_settings(tmp_path, binding):
  from trainer.cli import registry  # noqa: F401  (what configs name)
  from trainer.config import gin_config

  with pytest.raises(errors.ConfigError, match=re.escape(ROLE_SETTINGS[binding])):
    gin_config.load(str(tmp_path / "run"), [DQN_CONFIG], [binding])
  assert not (tmp_path / "run").exists()
