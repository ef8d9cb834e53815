"""A sweep's definition (grid, members, the diff a rerun is refused with) and the report's
estimators, against their definitions (no TensorFlow)."""

import json

import numpy as np
import pytest
from scipy import stats

from trainer.errors import ConfigError
from trainer.sweeps import definition, report

pytestmark = pytest.mark.fast


def _definition(tmp_path, grid=("create_dqn_agent.learning_rate=[1e-3, 2e-3]",
                                "train.batch_size=[32, 64, 128]"), seeds=2, text="x = 1\n"):
  gin = tmp_path / "c.gin"
  gin.write_text(text)
  return definition.Definition.create([str(gin)], ["train.num_iterations = 60"], list(grid),
                                      seeds)


def test_grid_flags_parse_and_refuse_in_one_line():
  assert definition.parse_grid("a.b=[1e-3, 2e-3]") == ("a.b", [0.001, 0.002])
  assert definition.parse_grid("a.b = ['x', (1, 2), None]") == ("a.b", ["x", (1, 2), None])
  for bad, message in [("a.b=1e-3", "non-empty \\[list\\]"), ("a.b=[]", "non-empty"),
                       ("learning_rate=[1]", "PARAMETER=\\[VALUE"),
                       ("a.b=[@foo]", "Python literals"), ("a.b=[1, 1]", "repeats a value")]:
    with pytest.raises(ConfigError, match=message):
      definition.parse_grid(bad)


def test_members_are_the_grid_product_times_seeds_configuration_major(tmp_path):
  d = _definition(tmp_path)
  assert len(d.configs) == 6 and len(d.members) == 12
  m = d.members[7]  # configuration 3 (lr 2e-3, batch 32), its seed 1
  assert (m.index, m.name, m.config, m.seed) == (7, "c3_seed1", 3, 1)
  assert m.bindings == ("create_dqn_agent.learning_rate = 0.002", "train.batch_size = 32",
                        "train.seed = 1")
  assert d.configs[3]["label"] == "learning_rate=0.002, batch_size=32"
  args = d.train_args(m, "/s")
  assert args[0] == "--root_dir=/s/members/c3_seed1"
  assert args[-4:] == ["--gin_bindings=train.num_iterations = 60",
                       "--gin_bindings=create_dqn_agent.learning_rate = 0.002",
                       "--gin_bindings=train.batch_size = 32", "--gin_bindings=train.seed = 1"]
  with pytest.raises(ConfigError, match="from 0 to 11"):
    d.member(12)
  with pytest.raises(ConfigError, match="pass --seeds=N instead"):
    _definition(tmp_path, grid=("train.seed=[1, 2]",))
  with pytest.raises(ConfigError, match="given twice"):
    _definition(tmp_path, grid=("a.b=[1, 2]", "a.b=[3]"))


def test_a_saved_definition_round_trips_and_a_changed_one_lists_each_difference(tmp_path):
  d = _definition(tmp_path)
  saved = definition.Definition.from_json(json.loads(json.dumps(d.to_json())))
  assert saved == d and saved.diff(d) == []
  changed = _definition(tmp_path, grid=("create_dqn_agent.learning_rate=[1e-3, 3e-3]",),
                        seeds=3, text="x = 2\n")
  lines = saved.diff(changed)
  assert any("its content changed since the sweep started" in line for line in lines)
  assert "grid create_dqn_agent.learning_rate: [0.001, 0.002] -> [0.001, 0.003]" in lines
  assert "grid train.batch_size: [32, 64, 128] -> (not in the grid)" in lines
  assert "seeds: 2 -> 3" in lines


def test_iqm_is_the_mean_of_the_middle_half():
  scores = np.array([100.0, 1, 2, 3, 4, 5, 6, -50])  # sorted: -50 1 2 3 4 5 6 100
  assert report.iqm(scores) == pytest.approx(np.mean([2, 3, 4, 5]))
  assert report.iqm(np.array([1.0, 2, 9])) == pytest.approx(4.0)  # 3 runs: nothing trimmed


def test_the_interval_is_the_percentile_bootstrap_of_the_iqm_over_runs():
  """rliable's interval against the definition, computed here from scratch: resample the
  runs with replacement, take the IQM of each resample, the 2.5th and 97.5th percentiles."""
  rng = np.random.default_rng(3)
  scores = rng.normal(100, 30, size=10)
  point, low, high = report.iqm_interval(scores, reps=4000)
  resampled = [stats.trim_mean(rng.choice(scores, size=scores.size), 0.25) for _ in range(4000)]
  ref_low, ref_high = np.percentile(resampled, [2.5, 97.5])
  assert point == pytest.approx(report.iqm(scores))
  spread = ref_high - ref_low
  assert abs(low - ref_low) < 0.1 * spread and abs(high - ref_high) < 0.1 * spread
  assert low < point < high


def test_steps_to_target_is_the_first_evaluation_at_or_above_it():
  evals = [{"train_step": s, "average_return": r, "env_steps": 10 * s}
           for s, r in [(0, 5.0), (10, 20.0), (20, 15.0), (30, 40.0)]]
  assert report.steps_to_target(evals, 20.0) == 100
  assert report.steps_to_target(evals, 41.0) is None
