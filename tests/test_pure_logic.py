"""Pure logic that end-to-end tests cover only through whole jobs: triggers,
config diffs and the knobs' declarations. Seconds in all (`make test-fast`)."""

import ast
import re

import pytest

from tests.conftest import REPO
from trainer.config import gin_config
from trainer.config.settings import BENIGN_BINDINGS, Settings, knob_table
from trainer.errors import ConfigError
from trainer.learning.triggers import GridTrigger

pytestmark = pytest.mark.fast


def _fired(interval: int, steps: list[int], start: int = 0) -> list[int]:
  fired = []
  trigger = GridTrigger(interval, lambda: fired.append(current))
  trigger.set_start(start)
  for current in steps:
    trigger(current)
  return fired


def test_grid_trigger_fires_on_multiples_whatever_the_call_steps():
  assert _fired(10, [3, 10, 17, 20, 29, 41]) == [10, 20, 41]  # 41 crossed 30 and 40: once
  assert _fired(10, list(range(1, 31))) == [10, 20, 30]


def test_grid_trigger_after_a_resume_continues_the_grid():
  # Resumed at 23 (an emergency checkpoint): the next events are 30 and 40, not 33 and 43.
  assert _fired(10, [25, 30, 35, 40], start=23) == [30, 40]
  assert _fired(10, [20, 21, 30], start=20) == [30]  # the resumed step does not fire again


OLD = """
train.num_iterations = 100
train.log_interval = 10
create_dqn_agent.learning_rate = 0.001
"""


def test_config_diff_lists_each_change_readably():
  new = OLD.replace("100", "200").replace("0.001", "0.5") + "train.seed = 3\n"
  assert gin_config.diff(OLD, new) == [
      "create_dqn_agent.learning_rate: 0.001 -> 0.5",
      "train.num_iterations: 100 -> 200",
      "train.seed: (unset) -> 3",
  ]
  assert gin_config.diff(OLD, OLD) == []


def test_benign_bindings_are_run_length_schedules_and_logging_only():
  assert {"train.num_iterations", "train.log_interval", "train.checkpoint_interval",
          "train.policy_export_interval"} <= BENIGN_BINDINGS
  for experiment in ("train.seed", "train.batch_size", "train.collect_steps_per_iteration",
                     "train.train_steps_per_iteration", "train.replay_fn", "train.agent_fn",
                     "create_dqn_agent.learning_rate"):
    assert experiment not in BENIGN_BINDINGS


REQUIRED = {"num_iterations": 100, "checkpoint_interval": 50, "policy_export_interval": 50,
            "eval_interval": 0}


def test_a_misspelt_knob_names_the_knob_it_resembles():
  with pytest.raises(ConfigError, match=r"^train\.num_iteration is not a knob of the job; did you "
                     r"mean train\.num_iterations\?$"):
    Settings.from_bindings({**REQUIRED, "num_iteration": 5})


def test_a_missing_required_knob_names_the_binding_that_sets_it():
  missing = {k: v for k, v in REQUIRED.items() if k != "checkpoint_interval"}
  with pytest.raises(ConfigError, match=r"train\.checkpoint_interval is required \(train steps "
                     r"between checkpoint bundles\); .*--gin_bindings='train\.checkpoint_interval = N'"):
    Settings.from_bindings(missing)
  assert Settings.from_bindings(REQUIRED).batch_size == 64  # the declared default


@pytest.mark.parametrize("knob,value,message", [
    ("num_iterations", 0, "must be > 0, got 0"),
    ("eval_interval", -1, "must be >= 0, got -1"),
    ("seed", 2**32, "must be at most 4294967295"),
    ("batch_size", True, "must be an int, got True"),
    ("collect_steps_per_iteration", 3, "must be a multiple of train.collect_envs=2"),
])
def test_each_knob_is_checked_by_its_declaration(knob, value, message):
  with pytest.raises(ConfigError, match=re.escape(message)):
    Settings.from_bindings({**REQUIRED, "collect_envs": 2, "collect_steps_per_iteration": 4,
                            knob: value})
  assert Settings.from_bindings({**REQUIRED, "eval_interval": 0, "seed": 2**32 - 1}).seed == 2**32 - 1


def test_the_configuration_guide_documents_every_knob_as_declared():
  assert knob_table() in (REPO / "docs" / "configuration.md").read_text(), (
      "docs/configuration.md's knob table differs from trainer.config.settings; paste "
      "knob_table() into it")


# Each folder is one concern; a folder imports only the ones below it.
LAYERS = [
    {"trainer.train", "trainer.status", "trainer.export", "trainer.evaluate",  # python -m ...
     "trainer.plot", "trainer.launch", "trainer.replay_server", "trainer.collect",
     "trainer.learn", "trainer.sweep", "trainer.report",
     "trainer.api"},  # trainer.api: trainer.run, from Python
    {"trainer.cli"},
    {"trainer.roles", "trainer.sweeps"},
    {"trainer.storage"},  # gs:// run directories: staged here, sealed in the bucket
    {"trainer.loops"},
    {"trainer.checkpoint"},
    {"trainer.acting", "trainer.agents", "trainer.replay", "trainer.policies"},
    {"trainer.learning"},
    {"trainer.config"},
    {"trainer.rundir"},
    {"trainer.compat"},  # a dependency's private pieces, one function each
    {"trainer.errors"},
]


def _package(module: str) -> str:
  return ".".join(module.split(".")[:2])


def test_imports_run_one_way_from_the_commands_down_to_the_parts():
  layer = {package: depth for depth, packages in enumerate(LAYERS) for package in packages}
  upward = []
  for path in (REPO / "trainer").rglob("*.py"):
    module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    if module == "trainer":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainer")):
        continue
      names = ([f"trainer.{a.name}" for a in node.names] if node.module == "trainer"
               else [node.module])
      for target in map(_package, names):
        source = _package(module)
        assert source in layer and target in layer, f"{module}: add its folder to LAYERS"
        if source != target and layer[target] <= layer[source]:
          upward.append(f"{module} imports {target}")
  assert not upward, upward


# Sizes that keep a module one concern and a function one idea (issue 25's bars).
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_no_module_over_400_lines_and_no_function_over_60():
  too_long = []
  for path in sorted((REPO / "trainer").rglob("*.py")):
    text = path.read_text()
    name = path.relative_to(REPO)
    if text.count("\n") > MAX_MODULE_LINES:
      too_long.append(f"{name}: {text.count(chr(10))} lines (split it by concern)")
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          too_long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
  assert not too_long, too_long
