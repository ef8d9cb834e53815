"""A ring of transitions that holds each observed frame once (no TensorFlow).

An Atari observation is a stack of the last K frames (84x84x4); stored as is,
every frame sits in K stacks, and a uniform buffer of 1M steps needs 28 GB. The
`FrameStore` keeps only the newest frame of each step and rebuilds the stacks
when it samples, as Dopamine's replay does.

The observation contract (`trainer.acting.frames.FrameStack`): the stack is the
last axis, oldest first; at an episode's first step the slots before its first
frame are zeros, and each later step shifts by one. The store checks the
contract as it adds (the previous frame must be the one before the newest), so
an environment that stacks otherwise fails loudly instead of training on wrong
stacks. `frame_stack=1` stores whole observations (MinAtar's 10x10xC).

Each environment has a row: a ring of `row_capacity` steps, indexed by the
row's logical step `t` (steps ever added to the row; slot `t % row_capacity`).
A step also stores the logical index of its episode's first step, so a stack
never reaches into another episode, and a sampled sequence may cross a
boundary (LAST then FIRST) as in TF-Agents' buffers: the agents mask it.
"""

import dataclasses

import numpy as np

FIRST = 0  # TF-Agents' StepType.FIRST
# What a stack must be, and what to do about observations that are not.
CONTRACT_FIX = ("(stack on the last axis, oldest first, zeros before an episode's first frame, "
                "shifting by one each step): build the environment with trainer's frame stack "
                "(create_atari_environment), or set create_frame_replay.frame_stack = 1")


def stack_follows(observation: np.ndarray, previous_frame: np.ndarray | None) -> bool:
  """Whether the stack `observation` keeps the contract after `previous_frame`, the
  newest frame of the step before (None: it starts an episode, so the slots before
  its newest frame are zeros)."""
  if previous_frame is None:
    return not observation[..., :-1].any()
  return np.array_equal(observation[..., -2], previous_frame)


class ContractError(ValueError):
  """Observations that are not frame stacks as the store expects."""


@dataclasses.dataclass(frozen=True)
class Field:
  """One flattened field of a transition, as a row stores it."""

  name: str
  shape: tuple[int, ...]
  dtype: np.dtype

  def to_json(self) -> dict:
    return {"name": self.name, "shape": list(self.shape), "dtype": np.dtype(self.dtype).str}


def stored_fields(fields: list[Field], observation: int, frame_stack: int) -> list[Field]:
  """The fields as stored: the observation's stack axis dropped (one frame a step)."""
  out = list(fields)
  if frame_stack > 1:
    obs = fields[observation]
    if not obs.shape or obs.shape[-1] != frame_stack:
      raise ContractError(
          f"the observation's shape {obs.shape} does not end in the frame stack {frame_stack}")
    out[observation] = Field(obs.name, obs.shape[:-1], obs.dtype)
  return out


def ring_shape(capacity: int, num_envs: int, segment_steps: int) -> tuple[int, int]:
  """(steps a ring holds, steps a segment holds): `capacity` shared by the
  rings, each cut into two or more equal segments of at most `segment_steps`
  (fewer than one step a segment more than asked for, in all)."""
  row = -(-capacity // num_envs)
  segments = max(2, -(-row // segment_steps))
  steps = -(-row // segments)
  return segments * steps, steps


class FrameStore:
  """Rows of rings of transitions; each frame stored once."""

  def __init__(self, fields: list[Field], *, observation: int, frame_stack: int, rows: int,
               row_capacity: int):
    self.fields = list(fields)
    self.observation, self.frame_stack = observation, frame_stack
    self.rows, self.row_capacity = rows, row_capacity
    self.stored = stored_fields(self.fields, observation, frame_stack)
    self.arrays = [np.zeros((rows, row_capacity, *f.shape), f.dtype) for f in self.stored]
    self.episode_start = np.zeros((rows, row_capacity), np.int64)
    self.totals = np.zeros(rows, np.int64)  # logical steps ever added, per row
    self._step_type = next(i for i, f in enumerate(self.fields) if f.name == "step_type")

  # --- adding ------------------------------------------------------------------

  def add(self, values: list[np.ndarray]) -> None:
    """Adds one batched step (field i: `values[i]`, a row per environment)."""
    first = np.asarray(values[self._step_type]).reshape(self.rows) == FIRST
    obs = np.asarray(values[self.observation])
    if self.frame_stack > 1:
      self._check_stack(obs, first)
    for r in range(self.rows):
      t = int(self.totals[r])
      slot = t % self.row_capacity
      previous = t - 1
      if first[r] or t == 0:
        start = t
      else:
        start = int(self.episode_start[r, previous % self.row_capacity])
      self.episode_start[r, slot] = start
      for i, array in enumerate(self.arrays):
        value = values[i][r]
        array[r, slot] = value[..., -1] if (i == self.observation and self.frame_stack > 1) \
            else value
      self.totals[r] = t + 1

  def _check_stack(self, obs: np.ndarray, first: np.ndarray) -> None:
    """The stack's second newest frame must be the previous step's newest (zeros
    at an episode's first step): else the environment stacks otherwise."""
    frames = self.arrays[self.observation]
    for r in range(self.rows):
      t = int(self.totals[r])
      previous = None if first[r] or t == 0 else frames[r, (t - 1) % self.row_capacity]
      if not stack_follows(obs[r], previous):
        raise ContractError(
            f"the observations are not frame stacks as the frame replay expects {CONTRACT_FIX}")

  # --- reading -----------------------------------------------------------------

  def size(self) -> int:
    return int(np.minimum(self.totals, self.row_capacity).sum())

  def oldest(self, row: int) -> int:
    return max(0, int(self.totals[row]) - self.row_capacity)

  def valid_range(self, row: int, sequence_length: int) -> tuple[int, int]:
    """[lo, hi) of the logical steps a sequence may start at: every step of it
    held, and every frame of its stacks (an overwritten frame may belong to
    the episode of the oldest held steps)."""
    total = int(self.totals[row])
    lo = 0 if total <= self.row_capacity else total - self.row_capacity + self.frame_stack - 1
    return lo, max(lo, total - sequence_length + 1)

  def sample(self, count: int, sequence_length: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` sequences drawn uniformly, with replacement, from every row's
    valid starts: one array per field, shaped [count, sequence_length, ...]."""
    ranges = [self.valid_range(r, sequence_length) for r in range(self.rows)]
    sizes = np.array([hi - lo for lo, hi in ranges], np.int64)
    if sizes.sum() <= 0:
      raise ValueError("the replay holds no complete sequence yet")
    draws = rng.integers(0, sizes.sum(), size=count)
    rows = np.searchsorted(np.cumsum(sizes), draws, side="right")
    starts = draws - (np.cumsum(sizes) - sizes)[rows] + np.array([lo for lo, _ in ranges])[rows]
    return self.gather(rows, starts, sequence_length)

  def gather(self, rows: np.ndarray, starts: np.ndarray, sequence_length: int) -> list[np.ndarray]:
    """The sequences of `sequence_length` steps from logical `starts` in `rows`."""
    steps = starts[:, None] + np.arange(sequence_length)  # [count, L]
    row_index = rows[:, None]
    slots = steps % self.row_capacity
    out = [array[row_index, slots] for array in self.arrays]
    if self.frame_stack > 1:
      out[self.observation] = self._stacks(row_index, steps, slots)
    return out

  def _stacks(self, row_index: np.ndarray, steps: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """[count, L, ..., K]: each step's K newest frames, zeros before its episode."""
    k = self.frame_stack
    frames = self.arrays[self.observation]
    start = self.episode_start[row_index, slots]  # [count, L]
    stack = np.zeros((*steps.shape, *frames.shape[2:], k), frames.dtype)
    for j in range(k):
      step = steps - (k - 1 - j)
      held = step >= start
      values = frames[row_index, step % self.row_capacity]  # [count, L, ...]
      values[~held] = 0
      stack[..., j] = values
    return stack

  def row_span(self, row: int, begin: int, end: int) -> list[np.ndarray]:
    """Views of logical steps [begin, end) of `row` (within one ring lap, slot
    order contiguous): every stored field, then the episode starts."""
    a, b = begin % self.row_capacity, begin % self.row_capacity + (end - begin)
    if not 0 < end - begin <= self.row_capacity or b > self.row_capacity:
      raise ValueError(f"steps [{begin}, {end}) are not one contiguous span of the ring")
    return [array[row, a:b] for array in self.arrays] + [self.episode_start[row, a:b]]
