"""What `train.*` in gin configures: the job's parts' builders, its loop and its knobs.

`configure_job` is the gin configurable `train.*` of every config: the parts'
builders (environment, agent, replay), the loop that drives them
(`train.loop`, e.g. `@off_policy_loop`) and the knobs (`Settings`). It
validates the knobs and returns a `JobSpec`; nothing is built yet
(`loops.parts` builds the parts, `loops.job` runs the job).
"""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, Protocol

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.environments import py_environment

from trainer.compat import gin as compat_gin
from trainer.config import gin_config
from trainer.config import settings as settings_lib
from trainer.config.settings import Settings
from trainer.learning import strategies
from trainer.loops.job_view import JobView
from trainer.loops.off_policy import OffPolicyLoop
from trainer.replay.base import Replay
from trainer.replay.uniform import create_uniform_replay
from trainer.rundir.signals import StopRequest


class Loop(Protocol):
  """What `train.loop` builds from a job: `loop(job, stop).run() -> exit code`.

  The loop class may also offer `check_config(settings, agent, replay_fn,
  strategy)`, called before the run directory is touched (a ConfigError: exit 2),
  and `replay_options(settings) -> dict`: keyword arguments the job adds to its
  `replay_fn` call (the on-policy loop's capacity), with
  `derived_replay_bindings = {param: the binding it comes from}` for the
  config-change check.
  """

  def run(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """What `train.*` in gin configures: the parts' builders, the loop and the knobs."""

  root_dir: str
  run_config: gin_config.RunConfig
  settings: Settings
  environment_fn: Callable[[], py_environment.PyEnvironment]
  agent_fn: Callable[..., tf_agent.TFAgent]
  replay_fn: Callable[..., Replay]
  loop: Callable[[JobView, StopRequest], Loop]
  strategy: Callable[[], tf.distribute.Strategy]
  # Not in gin: a role sets them (`loops.job.train`).
  # Reads the counters into `job.run_state` before a checkpoint, export, eval
  # or status reads them: the learner role's live on the replay server.
  refresh_counters: Callable[[JobView], None] | None = None
  # The checkpoints that triggers take write the replay in a thread while
  # training goes on (the learner role's: a Reverb checkpoint of a large table
  # takes seconds); SIGTERM's and the last one are whole before they return.
  background_checkpoints: bool = False


def configure_job(
    root_dir: str,
    run_config: gin_config.RunConfig,
    *,
    environment_fn: Callable[[], py_environment.PyEnvironment] = gin.REQUIRED,
    agent_fn: Callable[..., tf_agent.TFAgent] = gin.REQUIRED,
    replay_fn: Callable[..., Replay] = create_uniform_replay,
    loop: Callable[[JobView, StopRequest], Loop] = OffPolicyLoop,
    strategy: Callable[[], tf.distribute.Strategy] = strategies.default_strategy,
    **knobs: Any,
) -> JobSpec:
  """The job as configured in gin (`train.*`), validated.

  Args:
    root_dir: the run directory.
    run_config: the parsed config, saved into the run directory.
    environment_fn: builds one Python environment (called for collect and eval).
    agent_fn: `fn(time_step_spec, action_spec, train_step) -> TFAgent`.
    replay_fn: a replay builder from `trainer.replay`.
    loop: `fn(job, stop)` -> the loop that runs the job (`run() -> exit code`).
    strategy: builds the `tf.distribute` strategy the learner trains under
      (`trainer.learning.strategies`).
    **knobs: the job's knobs, declared in `trainer.config.settings.Settings`.
  """
  return JobSpec(root_dir=root_dir, run_config=run_config,
                 settings=Settings.from_bindings(knobs), environment_fn=environment_fn,
                 agent_fn=agent_fn, replay_fn=replay_fn, loop=loop, strategy=strategy)



# gin sees the knobs as parameters of `train` (so a misspelt binding is an
# error as the config is parsed), from their one declaration in Settings.
compat_gin.set_signature(configure_job, settings_lib.with_knobs(inspect.signature(configure_job)))
configure_job = gin.configurable("train", denylist=["root_dir", "run_config"])(configure_job)
