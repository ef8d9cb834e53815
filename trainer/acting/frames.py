"""A stack of an environment's last frames as its observation.

THE CONTRACT (a replay that stores each frame once and rebuilds stacks at
sample time depends on it exactly):

- the observation is uint8 of shape (H, W, k), k = `frame_stack`; the last axis
  is the stack, oldest frame first, the newest at index -1;
- at an episode's first step (a FIRST time step) the slots before the first
  frame are zeros, as in Dopamine: `obs[..., -1]` is the first frame and
  `obs[..., :-1] == 0`;
- each later step shifts the stack by one: `obs_t[..., :-1] == obs_{t-1}[..., 1:]`
  and `obs_t[..., -1]` is the frame of step t;
- a new episode starts from zeros again (the stack never spans two episodes).
"""

import numpy as np
from tf_agents.environments import py_environment, wrappers
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from trainer.errors import ConfigError


class FrameStack(wrappers.PyEnvironmentBaseWrapper):
  """Stacks the last `frame_stack` frames of an environment whose observation is
  one uint8 frame of shape (H, W) or (H, W, 1); see the module's contract."""

  def __init__(self, env: py_environment.PyEnvironment, frame_stack: int):
    super().__init__(env)
    spec = env.observation_spec()
    shape = tuple(spec.shape)
    if spec.dtype != np.uint8 or not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)):
      raise ConfigError(f"FrameStack needs an observation of one uint8 frame, (H, W) or "
                        f"(H, W, 1); got {spec.dtype} {shape}")
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
      raise ConfigError(f"frame_stack must be an int >= 1 (frames), e.g. 4; got {frame_stack!r}")
    height, width = shape[:2]
    self._stack = np.zeros((height, width, frame_stack), np.uint8)
    self._spec = array_spec.BoundedArraySpec(
        (height, width, frame_stack), np.uint8, 0, 255, name=spec.name or "observation")

  def observation_spec(self) -> array_spec.BoundedArraySpec:
    return self._spec

  def _push(self, time_step: ts.TimeStep) -> ts.TimeStep:
    frame = np.asarray(time_step.observation, np.uint8).reshape(self._stack.shape[:2])
    if time_step.is_first():
      self._stack[...] = 0
    else:
      self._stack[..., :-1] = self._stack[..., 1:]
    self._stack[..., -1] = frame
    return time_step._replace(observation=self._stack.copy())

  def _reset(self) -> ts.TimeStep:
    return self._push(self._env.reset())

  def _step(self, action) -> ts.TimeStep:
    return self._push(self._env.step(action))
