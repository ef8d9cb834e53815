"""Canaries for `trainer.compat`: one per function, each checking that the
private piece of a dependency it reaches into is still there with the shape
the trainer relies on (present, callable, its parameters, its behaviour on a
tiny example). A failure names the library, the installed version and the
pinned one (`trainer.compat.broken`): run this file first after an upgrade.
"""

import contextlib
import importlib.util
import inspect
import logging
import subprocess
import sys

import gin
import pytest

from tests.conftest import REPO
from trainer import compat
from trainer.compat import gin as compat_gin
from trainer.compat import gym as compat_gym


@contextlib.contextmanager
def canary(library: str, what: str):
  """Turns any error or failed assert in the block into one loud failure
  naming `library`'s installed and pinned versions."""
  try:
    yield
    return
  except compat.Broken as e:  # the compat function said so itself
    message = str(e)
  except Exception as e:  # AssertionError included: the piece is not what we rely on
    message = compat.broken(library, what, f"{type(e).__name__}: {e}")
  # `pytest.fail`, with the message alone: not under the library's traceback.
  raise pytest.fail.Exception(message, pytrace=False) from None


# A **knobs function whose signature declares its knobs, as `configure_job` does.
def _knobs_fn(name: str = "x", **knobs):
  return name, knobs


compat_gin.set_signature(_knobs_fn, inspect.Signature([
    inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="x"),
    inspect.Parameter("knob", inspect.Parameter.KEYWORD_ONLY, default=1)]))
_knobs_configurable = gin.configurable("compat_canary_knobs", module="compat_canary")(_knobs_fn)


@pytest.mark.fast
def test_broken_names_the_library_and_both_versions():
  message = compat.broken("tf_agents", "Learner._train", "'_train' is gone")
  assert message.startswith(f"tf_agents {compat.installed('tf_agents')} changed Learner._train")
  assert f"checked against tf_agents {compat.PINNED['tf_agents']}" in message
  assert "trainer/compat/tf_agents.py" in message
  assert set(compat.PINNED) == {"tensorflow", "tf_agents", "gin", "gym"}
  assert "not installed" not in {compat.installed(library) for library in compat.PINNED}


@pytest.mark.fast
def test_reach_turns_a_missing_attribute_into_the_versioned_error():
  with pytest.raises(compat.Broken, match=r"^gin \S+ changed gin\.config\._REGISTRY .*'_NOPE' is gone"):
    compat.reach("gin", gin.config, "_NOPE", "gin.config._REGISTRY")


@pytest.mark.fast
def test_gin_registered_selectors():
  with canary("gin", "gin.config._REGISTRY (items)"):
    selectors = compat_gin.registered_selectors()
    assert all(isinstance(s, str) for s in selectors), selectors[:5]
    assert "compat_canary.compat_canary_knobs" in selectors


@pytest.mark.fast
def test_gin_registered_function():
  with canary("gin", "gin.config._REGISTRY (get_match, Configurable.wrapped)"):
    assert compat_gin.registered_function("compat_canary_knobs") is _knobs_fn
    assert compat_gin.registered_function("compat_canary.compat_canary_knobs") is _knobs_fn
    assert compat_gin.registered_function("compat_canary_nothing_by_this_name") is None


@pytest.mark.fast
def test_gin_binding_statements():
  text = ("import os\n"
          "a.b = 3\n"
          "outer/a.c = 'text'\n"
          "a.d = @unregistered_canary_fn()\n"
          "a.e = @unregistered_canary_fn\n"
          "MACRO = 4\n")
  with canary("gin", "gin.config_parser.ConfigParser / BindingStatement / ParserDelegate"):
    statements = list(compat_gin.binding_statements(text))
    fields = [(s.scope, s.selector, s.arg_name) for s in statements]
    assert fields == [("", "a", "b"), ("outer", "a", "c"), ("", "a", "d"), ("", "a", "e"),
                      ("", "MACRO", "")], fields
    assert [statements[0].value, statements[1].value, statements[4].value] == [3, "text", 4]
    for value, evaluate in ((statements[2].value, True), (statements[3].value, False)):
      assert (value.selector, value.evaluate) == ("unregistered_canary_fn", evaluate)
    assert not hasattr(statements[0].value, "selector")  # how a literal is told from a reference
  with pytest.raises(SyntaxError, match="expected ':' or '='"):  # raised as it is iterated
    list(compat_gin.binding_statements("a.b 3\n"))


@pytest.mark.fast
def test_gin_set_signature():
  with canary("gin", "its parameter check (inspect.getfullargspec honouring __signature__)"):
    gin.parse_config("compat_canary_knobs.knob = 5")
    assert _knobs_configurable() == ("x", {"knob": 5})
    gin.clear_config()
    with pytest.raises(ValueError, match="bogus"):  # checked as the config is parsed
      gin.parse_config("compat_canary_knobs.bogus = 5")


def _import_gym_stderr(hide: bool) -> str:
  code = ("from trainer.compat import gym as g; g.hide_import_notice(); " if hide else "") + "import gym"
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                        cwd=REPO).stderr


@pytest.mark.fast
def test_gym_hide_import_notice():
  with canary("gym", "its import-time notice (gym/__init__.py reading gym_notices.notices)"):
    source = open(importlib.util.find_spec("gym").origin).read()
    assert f"import {compat_gym.NOTICES_MODULE} as notices" in source
    assert "notices.notices.get(__version__)" in source
    assert "unmaintained" in _import_gym_stderr(hide=False)  # the notice this hides
    assert "unmaintained" not in _import_gym_stderr(hide=True)


# TensorFlow and TF-Agents: quick unit tests on tiny graphs.

def test_tf_call_flat():
  import tensorflow as tf

  from trainer.compat import tf as compat_tf

  with canary("tensorflow", "ConcreteFunction._call_flat(tensor_inputs, captured_inputs)"):
    params = list(inspect.signature(type(tf.function(lambda: 0).get_concrete_function())._call_flat)
                  .parameters)
    assert params == ["self", "tensor_inputs", "captured_inputs"], params
    scale = tf.Variable(3.0)
    concrete = tf.function(lambda x: {"y": x * scale, "n": tf.size(x)}, autograph=False) \
        .get_concrete_function(tf.TensorSpec([None], tf.float32))
    out = compat_tf.call_flat(concrete, [tf.constant([1.0, 2.0])])
    assert set(out) == {"y", "n"}, out  # structured outputs
    assert out["y"].numpy().tolist() == [3.0, 6.0] and int(out["n"]) == 2
    scale.assign(4.0)  # captured by reference: the variable's value at call time
    assert compat_tf.call_flat(concrete, [tf.constant([1.0])])["y"].numpy().tolist() == [4.0]


def test_tf_freeze():
  import tensorflow as tf

  from trainer.compat import tf as compat_tf

  with canary("tensorflow", "tensorflow.python.framework.convert_to_constants"):
    scale = tf.Variable(2.0)
    concrete = tf.function(lambda x: x * scale, autograph=False).get_concrete_function(
        tf.TensorSpec([None], tf.float32, name="observation"))
    assert len(concrete.inputs) == 2  # the argument and the captured variable
    frozen = compat_tf.freeze(concrete)
    assert len(frozen.inputs) == 1 and len(frozen.outputs) == 1, (frozen.inputs, frozen.outputs)
    ops = {op.type for op in frozen.graph.get_operations()}
    assert not ops & {"VarHandleOp", "ReadVariableOp", "ResourceGather"}, ops
    assert frozen(tf.constant([1.5]))[0].numpy().tolist() == [3.0]  # a list of the outputs


def test_tf_silence_deprecation_notices(monkeypatch, caplog):
  from tensorflow.python.util import deprecation

  from trainer.compat import tf as compat_tf

  monkeypatch.setattr(deprecation, "_PRINT_DEPRECATION_WARNINGS", True)  # restored after
  # An in-process command earlier in this worker (trainer.run) filtered TensorFlow's logger
  # (trainer.cli.quiet): the notice must reach caplog whatever ran before.
  monkeypatch.setattr(logging.getLogger("tensorflow"), "filters", [])

  def notices(name: str) -> str:
    caplog.clear()
    fn = deprecation.deprecated(None, "canary instructions")(lambda: None)
    fn.__name__ = name
    fn()
    return caplog.text

  with canary("tensorflow", "tensorflow.python.util.deprecation._PRINT_DEPRECATION_WARNINGS"):
    assert "canary instructions" in notices("compat_canary_loud")  # the notice this silences
    compat_tf.silence_deprecation_notices()
    assert "canary instructions" not in notices("compat_canary_quiet")


class _Step:
  """`Learner.single_train_step` stand-in: counts its calls, returns a loss of rank 1."""

  def __init__(self, tf):
    self.calls = tf.Variable(0)
    self.strategy = tf.distribute.get_strategy()
    self._tf = tf

  def single_train_step(self, iterator):
    self.calls.assign_add(1)
    return self._tf.constant([1.0, 2.0]) * self._tf.cast(next(iterator), self._tf.float32)


def test_tf_agents_learner_train_loop():
  import tensorflow as tf

  from trainer.compat import tf_agents as compat_tf_agents

  with canary("tf_agents", "Learner._train.python_function"):
    loop = compat_tf_agents.learner_train_loop()
    params = list(inspect.signature(loop).parameters)
    assert params == ["self", "iterations", "iterator", "parallel_iterations"], params
    fake = _Step(tf)
    iterator = iter(tf.data.Dataset.range(1, 100))
    function = tf.function(lambda count: loop(fake, count, iterator, 10), autograph=True)
    loss = function(tf.constant(3))
    assert int(fake.calls) == 3  # `count` train steps in one call (autograph's while loop)
    assert float(loss) == 9.0  # the last step's loss (iterator's 3rd element), summed over axes


@pytest.fixture(scope="module")
def tiny_agent():
  import tensorflow as tf
  from tf_agents.agents.dqn import dqn_agent
  from tf_agents.networks import sequential
  from tf_agents.specs import tensor_spec
  from tf_agents.train.utils import train_utils
  from tf_agents.trajectories import time_step as ts

  agent = dqn_agent.DqnAgent(
      ts.time_step_spec(tf.TensorSpec([2], tf.float32)),
      tensor_spec.BoundedTensorSpec([], tf.int32, 0, 1),
      q_network=sequential.Sequential([tf.keras.layers.Dense(2)]),
      optimizer=tf.keras.optimizers.legacy.Adam(), train_step_counter=train_utils.create_train_step())
  agent.initialize()
  return agent


def test_tf_agents_experience_iterator(tiny_agent, tmp_path):
  import tensorflow as tf
  from tf_agents.train import learner

  from trainer.compat import tf_agents as compat_tf_agents

  with canary("tf_agents", "Learner._experience_iterator"):
    made = learner.Learner(
        str(tmp_path), tiny_agent.train_step_counter, tiny_agent,
        experience_dataset_fn=lambda: tf.data.Dataset.range(5).map(lambda i: (i, ())),
        run_optimizer_variable_init=False, checkpoint_interval=-1, summary_interval=0)
    iterator = compat_tf_agents.experience_iterator(made)
    assert [int(next(iterator)[0]) for _ in range(2)] == [0, 1]


def test_tf_agents_gather_all():
  import tensorflow as tf
  from tf_agents.replay_buffers import tf_uniform_replay_buffer

  from trainer.compat import tf_agents as compat_tf_agents

  with canary("tf_agents", "ReplayBuffer.gather_all (deprecated)"):
    buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        tf.TensorSpec([], tf.int32), batch_size=2, max_length=3)
    for step in range(3):
      buffer.add_batch(tf.constant([step, 10 + step]))
    whole = tf.function(lambda: compat_tf_agents.gather_all(buffer), autograph=False)()
    assert whole.numpy().tolist() == [[0, 1, 2], [10, 11, 12]]  # [rows, steps], in order
    # The supported replacement TF-Agents names gives the same batch.
    dataset = buffer.as_dataset(sample_batch_size=2, num_steps=3, single_deterministic_pass=True)
    assert next(iter(dataset))[0].numpy().tolist() == whole.numpy().tolist()


def test_tf_agents_agent_train_is_converted_unless_marked(tiny_agent):
  """The `do_not_convert` of `agent.train` in trainer.loops.job is needed: in
  TF2 a TFAgent's `train` is a plain method (TF-Agents wraps `_train` in
  `common.function` only under TF1), and `strategy.run` converts what it runs
  when autograph is on, as in the Learner's loop. When this fails, TF-Agents
  changed `train`: check whether the `do_not_convert` is still needed."""
  import tensorflow as tf
  from tf_agents.agents import tf_agent
  from tf_agents.utils import common

  def python_branch(x):  # runs only if autograph converts it
    if x > 0:
      return x
    return -x

  def traced(fn):
    return tf.function(lambda x: tf.distribute.get_strategy().run(fn, args=(x,)),
                       autograph=True).get_concrete_function(tf.TensorSpec([], tf.float32))

  with canary("tf_agents", "TFAgent.train (a plain method in TF2, run converted by autograph)"):
    assert "common.function_in_tf1()(self._train)" in inspect.getsource(tf_agent.TFAgent.__init__)
    assert common.has_eager_been_enabled()  # TF2: `function_in_tf1` calls `_train` as it is
    assert not isinstance(tiny_agent.train, tf.types.experimental.GenericFunction)
    traced(python_branch)  # converted: the `if` became a tf.cond
    with pytest.raises(tf.errors.OperatorNotAllowedInGraphError):
      traced(tf.autograph.experimental.do_not_convert(python_branch))
