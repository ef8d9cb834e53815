"""Pixel workloads: real ALE, MinAtar and Gymnasium environments, the frame-stack
contract, the Q-learning knobs, and a MinAtar and a Pong job trained and exported to ONNX."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import CONFIGS, REPO, bindings, cli_env, run_train
from trainer.acting import atari, envs, gymnasium_env, minatar_env
from trainer.errors import ConfigError


def _pong(seed: int, **knobs):
  env = atari.create_atari_environment("Pong", **knobs)
  envs.seed_environment(env, seed)
  return env


def _raw_pong(seed: int):
  """The same game built with Gymnasium alone, no trainer code but the id."""
  import gymnasium

  atari.register()
  raw = gymnasium.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.25,
                       full_action_space=False, max_num_frames_per_episode=108_000)
  raw = gymnasium.wrappers.AtariPreprocessing(raw, noop_max=30, frame_skip=4, screen_size=84,
                                              terminal_on_life_loss=False, grayscale_obs=True)
  return raw, raw.reset(seed=seed)[0]


def test_pong_specs_and_the_frame_stack_contract_against_gymnasium_alone():
  env = _pong(5)
  assert env.observation_spec().shape == (84, 84, 4) and env.observation_spec().dtype == np.uint8
  assert env.action_spec().dtype == np.int64 and env.action_spec().maximum == 5  # Pong's six
  raw, raw_frame = _raw_pong(5)
  time_step = env.reset()
  first = time_step.observation
  assert time_step.is_first() and first.dtype == np.uint8 and first.shape == (84, 84, 4)
  assert (first[..., :-1] == 0).all() and (first[..., -1] == raw_frame).all()
  assert first[..., -1].any()  # a real frame
  previous, actions = first, np.random.RandomState(0).randint(6, size=12)
  for action in actions:
    observation = env.step(np.int64(action)).observation
    raw_frame = raw.step(int(action))[0]
    assert (observation[..., :-1] == previous[..., 1:]).all()  # shifted by one
    assert (observation[..., -1] == raw_frame).all()  # the newest last
    previous = observation


def test_pong_episode_cut_by_frames_ends_with_discount_1_and_restarts_from_zeros():
  env = _pong(1, max_episode_frames=40, noop_max=0)  # 10 agent steps of 4 frames
  env.reset()
  steps = [env.step(np.int64(0)) for _ in range(10)]
  assert [t.is_last() for t in steps] == [False] * 9 + [True]
  assert steps[-1].discount == 1.0  # truncated, not terminated
  restart = env.step(np.int64(0))
  assert restart.is_first() and (restart.observation[..., :-1] == 0).all()
  assert restart.observation[..., -1].any()
  assert (env.step(np.int64(0)).observation[..., -2] == restart.observation[..., -1]).all()


def _frames(env, actions) -> np.ndarray:
  env.reset()
  return np.stack([env.step(np.int64(a)).observation[..., -1] for a in actions])


def test_pong_is_deterministic_under_a_seed_and_actions_stick():
  actions = np.random.RandomState(1).randint(6, size=30)
  assert (_frames(_pong(3), actions) == _frames(_pong(3), actions)).all()
  assert (_frames(_pong(3), actions) != _frames(_pong(4), actions)).any()
  # Always sticky: the first action (NOOP at reset) repeats, whatever the agent picks.
  up, down = [2] * 30, [3] * 30
  stuck = dict(sticky_action_probability=1.0, noop_max=0)
  assert (_frames(_pong(3, **stuck), up) == _frames(_pong(3, **stuck), down)).all()
  free = dict(sticky_action_probability=0.0, noop_max=0)
  assert (_frames(_pong(3, **free), up) != _frames(_pong(3, **free), down)).any()


@pytest.mark.parametrize("knobs,expected", [
    ({"game": "Pongg"}, "create_atari_environment.game='Pongg' is not an ALE game; use one of"),
    ({"sticky_action_probability": 1.5}, "create_atari_environment.sticky_action_probability"),
    ({"frame_stack": 0}, "create_atari_environment.frame_stack must be an int >= 1, e.g. 4"),
])
def test_atari_config_errors_are_one_line_naming_the_knob(knobs, expected):
  with pytest.raises(ConfigError) as raised:
    atari.create_atari_environment(**knobs)
  line = str(raised.value).splitlines()[0]  # the rest is gin's note on the call
  assert line.startswith(expected)
  if "game" in knobs:
    assert "'Pong'" in line and "'Breakout'" in line


def _minatar_run(seed: int, steps: int = 60):
  env = minatar_env.create_minatar_environment("breakout")
  envs.seed_environment(env, seed)
  actions = np.random.RandomState(0).randint(3, size=steps)
  time_steps = [env.reset()] + [env.step(np.int64(a)) for a in actions]
  return env, time_steps


def test_minatar_breakout_specs_values_and_seeding():
  env, time_steps = _minatar_run(2)
  spec = env.observation_spec()
  assert spec.shape == (10, 10, 4) and spec.dtype == np.uint8 and spec.maximum == 1
  assert env.action_spec().minimum == 0 and env.action_spec().maximum == 2  # minimal set
  observations = np.stack([t.observation for t in time_steps])
  assert observations.dtype == np.uint8 and set(np.unique(observations)) == {0, 1}
  assert any(t.is_last() and t.discount == 0.0 for t in time_steps)  # a lost ball ends it
  again = np.stack([t.observation for t in _minatar_run(2)[1]])
  other = np.stack([t.observation for t in _minatar_run(3)[1]])
  assert (observations == again).all() and (observations != other).any()


def test_cartpole_through_the_gymnasium_adapter():
  env = gymnasium_env.create_gymnasium_environment("CartPole-v1", max_episode_steps=5)
  envs.seed_environment(env, 7)
  first = env.reset()
  assert env.observation_spec().shape == (4,) and env.action_spec().maximum == 1
  assert envs.env_generator(env) is not None  # saved in bundles
  steps = [env.step(np.int64(i % 2)) for i in range(5)]
  assert [t.is_last() for t in steps] == [False] * 4 + [True]
  assert steps[-1].discount == 1.0  # truncated: the value goes on
  again = gymnasium_env.create_gymnasium_environment("CartPole-v1")
  envs.seed_environment(again, 7)
  assert (again.reset().observation == first.observation).all()
  falls = [again.step(np.int64(1)) for _ in range(30)]
  ended = [t for t in falls if t.is_last()][0]
  assert ended.discount == 0.0  # terminated: the pole fell


@pytest.mark.skipif(__import__("importlib").util.find_spec("Box2D") is not None,
                    reason="Box2D is installed here")
@pytest.mark.parametrize("name,expected", [
    ("LunarLander-v3", "create_gymnasium_environment.name='LunarLander-v3' needs the Python "
     "module 'Box2D' (pip package \"gymnasium[box2d]\""),
    ("Nope-v0", "create_gymnasium_environment.name='Nope-v0' cannot be made"),
])
def test_gymnasium_missing_package_or_unknown_id_is_one_line(name, expected):
  with pytest.raises(ConfigError) as raised:
    gymnasium_env.create_gymnasium_environment(name)
  line = str(raised.value).splitlines()[0]  # the rest is gin's note on the call
  assert line.startswith(expected)
  assert "install it into the trainer's .venv" in line or "such as 'CartPole-v1'" in line


def test_epsilon_schedule_decays_linearly_then_holds_and_is_checked():
  import tensorflow as tf

  from trainer.agents import q_learning
  step = tf.Variable(0, dtype=tf.int64)
  epsilon = q_learning.epsilon_schedule("create_dqn_agent", 1.0, 0.1, 100, step)
  values = []
  for at in (0, 50, 100, 1000):
    step.assign(at)
    values.append(float(epsilon()))
  assert np.allclose(values, [1.0, 0.55, 0.1, 0.1])
  assert q_learning.epsilon_schedule("create_dqn_agent", 0.1, None, 0, step) == 0.1
  with pytest.raises(ConfigError, match="needs create_dqn_agent.epsilon_final"):
    q_learning.epsilon_schedule("create_dqn_agent", 1.0, None, 10, step)


# Real frames from the run's environment, through onnxruntime and the TF-only serving form.
ONNX_VS_TF_ON_FRAMES = r"""
import json, sys
import numpy as np
import onnxruntime
import tensorflow as tf
from trainer.cli import registry  # noqa: F401
from trainer.config import gin_config
from trainer.loops import job
from trainer.acting import envs
root, export = sys.argv[1:]
env = job.configure_job(root, gin_config.load(root, [], [])).environment_fn()
envs.seed_environment(env, 11)
random, frames, time_step = np.random.RandomState(11), [], env.reset()
while len(frames) < 256:
  frames.append(time_step.observation)
  time_step = env.step(np.int64(random.randint(env.action_spec().maximum + 1)))
frames = np.stack(frames)
session = onnxruntime.InferenceSession(f"{export}/greedy.onnx", providers=["CPUExecutionProvider"])
onnx_actions = session.run(["action"], {"observation": frames})[0]
serve = tf.saved_model.load(f"{export}/serving").signatures["serving_default"]
tf_actions = serve(observation=tf.constant(frames))["action"].numpy()
print(json.dumps({"dtype": str(frames.dtype), "shape": list(frames.shape),
                  "distinct": int(len(np.unique(frames.reshape(256, -1), axis=0))),
                  "onnx": onnx_actions.tolist(), "tf": tf_actions.tolist()}))
"""

# Each shipped pixel config, its networks as shipped, trained for a few steps, then to ONNX.
PIXEL_CONFIGS = [
    ("dqn_minatar.gin", 200, {"create_minatar_environment.max_episode_steps": 100}, (10, 10, 4)),
    ("dqn_atari.gin", 4, {"create_atari_environment.max_episode_frames": 400}, (84, 84, 4)),
]


@pytest.mark.parametrize("config,steps,env_knobs,shape", PIXEL_CONFIGS,
                         ids=[c for c, *_ in PIXEL_CONFIGS])
def test_pixel_config_trains_exports_and_onnx_agrees_with_tf_on_real_frames(
    tmp_path, config, steps, env_knobs, shape):
  root = tmp_path / "run"
  short = {"train.num_iterations": steps, "train.checkpoint_interval": steps,
           "train.policy_export_interval": steps, "train.eval_interval": steps,
           "train.eval_episodes": 1, "train.initial_collect_steps": 100, "train.batch_size": 8,
           "train.log_interval": steps, "train.summary_interval": steps,
           "create_uniform_replay.capacity": 1000, "create_frame_replay.capacity": 1000,
           **env_knobs}
  trained = run_train(root, gin_files=(str(CONFIGS / config),), gin_bindings=bindings(short))
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert f"Training complete at step {steps}" in trained.stderr
  assert "A.L.E:" not in trained.stderr and "matplotlib" not in trained.stderr  # quiet logs
  export = root / "policies" / f"{steps:010d}"
  out = subprocess.run([sys.executable, "-m", "trainer.export", f"--root_dir={root}",
                        "--format=onnx"], cwd=REPO, env=cli_env(), capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split() == [str(export / "greedy.onnx")]
  compared = subprocess.run([sys.executable, "-c", ONNX_VS_TF_ON_FRAMES, str(root), str(export)],
                            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert compared.returncode == 0, compared.stderr[-3000:]
  result = json.loads(compared.stdout.splitlines()[-1])
  assert result["dtype"] == "uint8" and result["shape"] == [256, *shape]
  assert result["distinct"] > 50  # real, varied frames
  assert len(result["onnx"]) == 256 and result["onnx"] == result["tf"]
