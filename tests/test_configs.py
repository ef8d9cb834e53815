"""Every shipped config parses, builds its parts, trains, and records every knob."""

import inspect
import re

import pytest
from tf_agents.specs import tensor_spec

from tests.conftest import CONFIGS, bindings
from trainer.cli import (
  registry,  # noqa: F401
  status,
)
from trainer.config import gin_config
from trainer.config.settings import knob_names
from trainer.loops.job import configure_job, open_job
from trainer.loops.parts import build_agent

CONFIG_FILES = sorted(CONFIGS.glob("*.gin"))

# Keeps each config's agent, networks and replay as shipped; only shortens the run.
SHORT_RUN = {
    "train.num_iterations": 3,
    "train.checkpoint_interval": 2,
    "train.policy_export_interval": 3,
    "train.eval_interval": 3,
    "train.eval_episodes": 1,
    "train.initial_collect_steps": 20,
    "train.batch_size": 8,
    "create_gym_environment.max_episode_steps": 20,
}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_each_config_parses_and_builds_its_environment_agent_and_loop(tmp_path, path):
  """As shipped, nothing shortened: gin's precheck and parse, then `train.*` resolved
  and the agent built on the environment's specs, with nothing written."""
  root = str(tmp_path / "run")
  gin_config.precheck(root, [str(path)], [])
  spec = configure_job(root, gin_config.load(root, [str(path)], []))
  agent, train_step = build_agent(spec)
  env = spec.environment_fn()
  assert agent.action_spec == tensor_spec.from_spec(env.action_spec())
  assert agent.time_step_spec == tensor_spec.from_spec(env.time_step_spec())
  assert int(train_step.numpy()) == 0
  check = getattr(spec.loop, "check_config", None)
  if check is not None:  # the loop's own checks (the on-policy loop's knobs)
    check(spec.settings, agent, spec.replay_fn, spec.strategy())
  assert not (tmp_path / "run").exists()


def test_every_config_is_trained_by_a_test():
  """The others train end to end in test_exports' per-agent ONNX test, and the pixel
  configs in test_pixels' ONNX test on real frames."""
  from tests.test_exports import AGENT_CONFIGS
  from tests.test_pixels import PIXEL_CONFIGS
  assert {p.name for p in CONFIG_FILES} == ({"dqn_cartpole.gin"} | {c for c, _ in AGENT_CONFIGS}
                                            | {c for c, *_ in PIXEL_CONFIGS})


@pytest.mark.parametrize("path", [CONFIGS / "dqn_cartpole.gin"], ids=lambda p: p.name)
def test_config_parses_builds_and_trains(tmp_path, path):
  root = str(tmp_path / "run")
  short = SHORT_RUN
  run_config = gin_config.load(root, [str(path)], bindings(short))
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
  result = status.run_status(root)
  total = short["train.num_iterations"]
  assert result["complete"] is True
  assert result["train_step"] == total
  assert result["checkpoints"][-1] == total
  assert [e["train_step"] for e in result["exports"]] == [total]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_sets_every_train_knob(path):
  """A config is a complete experiment record: no `train.*` knob is left to a default."""
  text = path.read_text()
  knobs = [name for name, p in inspect.signature(configure_job).parameters.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY] + knob_names()
  missing = [k for k in knobs if not re.search(rf"^train\.{k}\s*=", text, re.MULTILINE)]
  assert not missing, f"{path.name} leaves train.{missing} unset"
