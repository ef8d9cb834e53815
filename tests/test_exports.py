"""Every export is a standalone SavedModel that loads in a fresh process and acts."""

import json
import subprocess
import sys

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
  assert names and all(n.isdigit() for n in names), names
