"""Every export is a standalone SavedModel that loads in a fresh process and acts."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, TINY_DQN, bindings, cli_env, run_train, status

# Runs in a fresh interpreter: loads each export with tf.saved_model.load.
# TF-Agents is imported only to register the TF Probability spec types that a
# PolicySaver model refers to (a later issue removes even that need).
LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tf_agents  # noqa: F401
out = []
for path in sys.argv[1:]:
  policy = tf.saved_model.load(path)
  time_step = {
      "step_type": tf.constant([0], tf.int32), "reward": tf.constant([0.0]),
      "discount": tf.constant([1.0]), "observation": tf.constant(np.zeros((1, 4), np.float32))}
  from tf_agents.trajectories import time_step as ts
  step = ts.TimeStep(**time_step)
  action = policy.action(step, policy.get_initial_state(1)).action
  out.append({"path": path, "train_step": int(policy.get_train_step().numpy()),
              "env_step": int(policy.get_metadata()["env_step"].numpy()),
              "action": action.numpy().tolist()})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("exports") / "run"
  result = run_train(root, gin_bindings=bindings(TINY_DQN))
  assert result.returncode == 0, result.stderr
  return root


def test_every_export_loads_in_a_fresh_process_and_acts(finished_run):
  exports = status(finished_run)["exports"]
  assert [e["train_step"] for e in exports] == [30, 60]
  paths = [f"{e['path']}/{kind}" for e in exports for kind in ("greedy", "collect")]
  out = subprocess.run([sys.executable, "-c", LOADER, *paths], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=180)
  assert out.returncode == 0, out.stderr
  loaded = json.loads(out.stdout.strip().splitlines()[-1])
  for export in exports:
    metadata = json.loads((finished_run / "policies" / f"{export['train_step']:010d}" /
                           "metadata.json").read_text())
    for kind in ("greedy", "collect"):
      entry = next(x for x in loaded if x["path"] == f"{export['path']}/{kind}")
      assert entry["train_step"] == export["train_step"]
      assert entry["env_step"] == metadata["env_steps"] > 0
      assert entry["action"][0] in (0, 1)


def test_export_metadata_records_step_counters_and_versions(finished_run):
  metadata = json.loads((finished_run / "policies" / "0000000060" / "metadata.json").read_text())
  assert metadata["train_step"] == 60
  assert metadata["episodes"] > 0
  assert metadata["eval_average_return"] is not None
  assert metadata["versions"]["tf-agents"] == "0.19.0"
  assert len(metadata["config_sha256"]) == 16


def test_no_partial_export_is_visible(finished_run):
  names = [p.name for p in (finished_run / "policies").iterdir()]
  assert not [n for n in names if n.startswith(".")], names


# Imports nothing but TensorFlow (and NumPy), and proves it.
TF_ONLY = r"""
import json, sys
import numpy as np
import tensorflow as tf
observations = np.array(json.loads(sys.argv[1]), np.float32)
out = {}
for path in sys.argv[2:]:
  serve = tf.saved_model.load(path).signatures["serving_default"]
  out[path] = serve(observation=tf.constant(observations))["action"].numpy().tolist()
extra = [m for m in sys.modules if m.startswith(("tf_agents", "tensorflow_probability"))]
assert not extra, f"imported more than TensorFlow: {extra[:5]}"
print(json.dumps(out))
"""

# The greedy PolicySaver export and TF-Agents' policy_loader on the same observations.
WITH_TF_AGENTS = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tf_agents.policies import policy_loader
from tf_agents.trajectories import time_step as ts
observations = np.array(json.loads(sys.argv[1]), np.float32)
first = ts.restart(tf.constant(observations), batch_size=len(observations))
# policy_loader gives a Python policy: one unbatched NumPy time step per call.
loader_actions = lambda policy: [int(policy.action(ts.restart(o)).action) for o in observations]
root, step = sys.argv[2], int(sys.argv[3])
greedy = tf.saved_model.load(f"{root}/policies/{step:010d}/greedy")
loaded = policy_loader.load(f"{root}/policies/greedy_policy",
                            f"{root}/policies/checkpoints/policy_checkpoint_{step:010d}")
print(json.dumps({"greedy": greedy.action(first, ()).action.numpy().tolist(),
                  "loader": loader_actions(loaded),
                  "loader_step": int(loaded.get_train_step())}))
"""

OBSERVATIONS = [[0.0, 0.0, 0.0, 0.0], [0.1, -0.5, 0.05, 0.4], [-0.2, 0.3, -0.1, -0.6],
                [0.02, 1.0, -0.05, -1.2]]


def _run_json(script, *args):
  out = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=180)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_form_loads_with_tensorflow_alone_and_matches_the_greedy_policy(finished_run):
  index = json.loads((finished_run / "policies" / "index.json").read_text())
  paths = [str(finished_run / "policies" / e["path"] / "serving") for e in index["exports"]]
  served = _run_json(TF_ONLY, json.dumps(OBSERVATIONS), *paths)
  for entry in index["exports"]:
    actions = served[str(finished_run / "policies" / entry["path"] / "serving")]
    reference = _run_json(WITH_TF_AGENTS, json.dumps(OBSERVATIONS), str(finished_run),
                          str(entry["train_step"]))
    assert actions == reference["greedy"]  # DQN: the same argmax actions
    assert reference["loader"] == reference["greedy"]
    assert reference["loader_step"] == entry["train_step"]


def test_saved_model_cli_runs_the_serving_signature(finished_run):
  cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
  out = subprocess.run(
      [str(cli), "run", "--dir", str(finished_run / "policies" / "0000000060" / "serving"),
       "--tag_set", "serve", "--signature_def", "serving_default",
       "--input_exprs", "observation=[[0.0, 0.0, 0.0, 0.0], [0.1, -0.5, 0.05, 0.4]]"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=180)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Result for output key action" in out.stdout


def test_index_and_pointers(finished_run):
  policies = finished_run / "policies"
  index = json.loads((policies / "index.json").read_text())
  assert [e["train_step"] for e in index["exports"]] == [30, 60]
  assert index["latest"] == "0000000060" == (policies / "LATEST").read_text().strip()
  returns = {e["path"]: e["eval_average_return"] for e in index["exports"]}
  assert index["best"] == max(returns, key=returns.get) == (policies / "BEST").read_text().strip()
  for entry in index["exports"]:
    assert entry["env_steps"] > 0 and entry["episodes"] > 0 and "exported_at" in entry
    assert entry["config_sha256"] and entry["versions"]["tensorflow"].startswith("2.15")
  # TF-Agents' layout beside ours.
  for name in ("policy", "greedy_policy", "collect_policy"):
    assert (policies / name / "saved_model.pb").is_file()
  assert sorted(p.name for p in (policies / "checkpoints").iterdir()) == [
      "policy_checkpoint_0000000030", "policy_checkpoint_0000000060"]


def _cli(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=300)


def test_export_command_exports_a_bundle_after_the_fact(finished_run, tmp_path):
  root = tmp_path / "run"
  shutil.copytree(finished_run, root)
  out = _cli("trainer.export", f"--root_dir={root}", "--step=20")  # bundle 20 had no export
  assert out.returncode == 0, out.stderr[-3000:]
  export = root / "policies" / "0000000020"
  assert out.stdout.split() == [str(export)]
  assert sorted(p.name for p in export.iterdir()) == ["collect", "greedy", "metadata.json", "serving"]
  metadata = json.loads((export / "metadata.json").read_text())
  bundle = json.loads((root / "train/bundles/0000000020/COMMITTED").read_text())["summary"]
  assert metadata["train_step"] == 20 and metadata["env_steps"] == bundle["env_steps"]
  index = json.loads((root / "policies" / "index.json").read_text())
  assert [e["train_step"] for e in index["exports"]] == [20, 30, 60]
  reference = _run_json(WITH_TF_AGENTS, json.dumps(OBSERVATIONS), str(root), "20")
  assert reference["loader_step"] == 20 and reference["loader"] == reference["greedy"]
  served = _run_json(TF_ONLY, json.dumps(OBSERVATIONS), str(export / "serving"))
  assert served[str(export / "serving")] == reference["greedy"]

  missing = _cli("trainer.export", f"--root_dir={root}", "--step=25")
  assert missing.returncode == 2
  assert "no committed bundle at step 25; committed steps are [20, 40, 60]" in missing.stderr


def test_evaluate_command_writes_table_and_plot(finished_run, tmp_path):
  prefix = tmp_path / "evals"
  out = _cli("trainer.evaluate", f"--root_dir={finished_run}", "--episodes=2", f"--output={prefix}")
  assert out.returncode == 0, out.stderr[-3000:]
  rows = json.loads(prefix.with_suffix(".json").read_text())
  assert [r["train_step"] for r in rows] == [30, 60]
  assert all(r["episodes"] == 2 and r["min_return"] <= r["average_return"] <= r["max_return"]
             for r in rows)
  assert prefix.with_suffix(".csv").read_text().splitlines()[0].startswith("train_step,path,")
  assert prefix.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # One export evaluated again updates its row and keeps the others.
  again = _cli("trainer.evaluate", f"--policy={finished_run / 'policies' / '0000000030'}",
               "--env=CartPole-v0", "--episodes=1", f"--output={prefix}")
  assert again.returncode == 0, again.stderr[-3000:]
  merged = json.loads(prefix.with_suffix(".json").read_text())
  assert [(r["train_step"], r["episodes"]) for r in merged] == [(30, 1), (60, 2)]
  assert merged[1] == rows[1]
  assert len(prefix.with_suffix(".csv").read_text().splitlines()) == 3

  single = _cli("trainer.evaluate", f"--policy={finished_run / 'policies' / '0000000060'}",
                "--env=CartPole-v0", "--episodes=1", f"--output={tmp_path / 'one'}")
  assert single.returncode == 0, single.stderr[-3000:]
  assert [r["train_step"] for r in json.loads((tmp_path / "one.json").read_text())] == [60]


# onnxruntime and the TF-only serving form on the same observations.
ONNX_VS_SAVED_MODEL = r"""
import json, sys
import numpy as np
import onnxruntime
import tensorflow as tf
dim, exports = int(sys.argv[1]), sys.argv[2:]
observations = np.random.RandomState(7).normal(size=(256, dim)).astype(np.float32)
out = {}
for export in exports:
  session = onnxruntime.InferenceSession(f"{export}/greedy.onnx", providers=["CPUExecutionProvider"])
  onnx_actions = session.run(["action"], {"observation": observations})[0]
  serve = tf.saved_model.load(f"{export}/serving").signatures["serving_default"]
  saved_actions = serve(observation=tf.constant(observations))["action"].numpy()
  out[export] = {"onnx": onnx_actions.tolist(), "saved_model": saved_actions.tolist()}
print(json.dumps(out))
"""


def test_onnx_export_gives_the_saved_models_actions_dqn(finished_run, tmp_path):
  root = tmp_path / "run"
  shutil.copytree(finished_run, root)
  out = _cli("trainer.export", f"--root_dir={root}", "--all", "--format=onnx")
  assert out.returncode == 0, out.stderr[-3000:]
  exports = [root / "policies" / name for name in ("0000000030", "0000000060")]
  assert out.stdout.split() == [str(e / "greedy.onnx") for e in exports]
  compared = _run_json(ONNX_VS_SAVED_MODEL, "4", *map(str, exports))
  for export in exports:
    actions = compared[str(export)]
    assert len(actions["onnx"]) == 256 and actions["onnx"] == actions["saved_model"]  # equal
  assert not [p for p in (root / "policies").rglob("*.partial")]

  # A bundle without an export: the export is written first, then its ONNX form.
  out = _cli("trainer.export", f"--root_dir={root}", "--step=20", "--format=onnx")
  assert out.returncode == 0, out.stderr[-3000:]
  export = root / "policies" / "0000000020"
  assert out.stdout.split() == [str(export / "greedy.onnx")]
  assert {"greedy", "serving", "metadata.json", "greedy.onnx"} <= {p.name for p in export.iterdir()}
  actions = _run_json(ONNX_VS_SAVED_MODEL, "4", str(export))[str(export)]
  assert actions["onnx"] == actions["saved_model"]


def test_onnx_comparison_is_exact_for_discrete_and_bounded_for_continuous():
  from trainer.policies import onnx_policy
  assert onnx_policy.compare(np.array([0, 1, 1]), np.array([0, 1, 1])) is None
  assert onnx_policy.compare(np.array([0, 1, 1]), np.array([0, 0, 1])) == "1 of 3 actions differ"
  assert onnx_policy.compare(np.array([[0.5]]), np.array([[0.5 + 1e-7]])) is None
  assert "differ by up to" in onnx_policy.compare(np.array([[0.5]]), np.array([[0.51]]))
  assert "shapes differ" in onnx_policy.compare(np.zeros((2, 1)), np.zeros((2,)))


# Every shipped config but the DQN one (whose ONNX tests are above); this test is also
# where each of them is trained end to end (tests/test_configs.py checks the list).
AGENT_CONFIGS = [("sac_pendulum.gin", "3"), ("td3_pendulum.gin", "3"), ("c51_cartpole.gin", "4"),
                 ("ppo_cartpole.gin", "4"), ("ppo_pendulum.gin", "3")]


@pytest.mark.parametrize("config,observation_size", AGENT_CONFIGS)
def test_onnx_export_gives_the_saved_models_actions_for_each_agent(tmp_path, config,
                                                                   observation_size):
  root = tmp_path / "run"
  short = {"train.num_iterations": 4, "train.checkpoint_interval": 4,
           "train.policy_export_interval": 4, "train.eval_interval": 4, "train.eval_episodes": 1,
           "train.initial_collect_steps": 20, "train.batch_size": 8,
           "create_gym_environment.max_episode_steps": 20}
  if config.startswith("ppo"):  # batches of 32 env steps, one epoch
    short.update({"train.initial_collect_steps": 0, "create_ppo_agent.num_epochs": 1,
                  "train.log_interval": 4, "train.summary_interval": 4,
                  "train.collect_steps_per_iteration": 32})
    if config == "ppo_cartpole.gin":  # whole batches (the agent's own train): a batch a step
      short.update({"create_ppo_agent.minibatch_size": None, "train.train_steps_per_iteration": 1})
    else:  # its minibatches, normal policy and per-state scale: two minibatches a batch
      short.update({"create_ppo_agent.minibatch_size": 16, "train.train_steps_per_iteration": 2})
  trained = run_train(root, gin_files=(str(REPO / "configs" / config),),
                      gin_bindings=bindings(short))
  assert trained.returncode == 0, trained.stderr[-3000:]
  done = status(root)  # the config parsed, built, trained, checkpointed and exported
  assert done["complete"] and done["train_step"] == done["checkpoints"][-1] == 4
  assert [e["train_step"] for e in done["exports"]] == [4]
  out = _cli("trainer.export", f"--root_dir={root}", "--format=onnx")  # the latest export
  assert out.returncode == 0, out.stderr[-3000:]
  export = root / "policies" / "0000000004"
  assert out.stdout.split() == [str(export / "greedy.onnx")]
  actions = _run_json(ONNX_VS_SAVED_MODEL, observation_size, str(export))[str(export)]
  onnx_actions, saved = (np.array(actions[k]) for k in ("onnx", "saved_model"))
  import onnxruntime
  session = onnxruntime.InferenceSession(str(export / "greedy.onnx"),
                                         providers=["CPUExecutionProvider"])
  assert [i.name for i in session.get_inputs()] == ["observation"]  # nothing else to feed
  assert [o.name for o in session.get_outputs()] == ["action"]
  if config.endswith("cartpole.gin"):  # discrete: equal
    assert onnx_actions.shape == saved.shape == (256,) and (onnx_actions == saved).all()
  else:  # continuous: the mean action (SAC) or the actor's (TD3), within tolerance
    assert onnx_actions.shape == saved.shape == (256, 1)
    assert np.abs(onnx_actions - saved).max() <= 1e-5
    assert np.unique(saved.round(4)).size > 10  # a real function of the observation
