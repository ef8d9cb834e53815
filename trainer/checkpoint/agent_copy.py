"""A committed bundle's agent and counters, read without the run's lock: copied aside first.

A running job may prune a bundle (its retention) while another process reads
it (`trainer.export`). `copy_agent` copies the bundle's agent checkpoint and
its `state.json` into a directory of the reader's, each copy checked against
the bundle's manifest, so the reader gets the bundle whole, or `BundleGone`,
or one clear line for a damaged bundle; never a half-read agent. Restore the
copy with `bundle_parts.AgentPart.read_copy`. Imports no TensorFlow.
"""

import dataclasses
import os
import shutil

from trainer.checkpoint.bundle_store import Bundle, file_problem_at
from trainer.errors import RunDirError
from trainer.rundir import fileio, layout


class BundleGone(Exception):
  """The bundle was deleted (pruned by a running job) while being read."""


@dataclasses.dataclass(frozen=True)
class AgentCopy:
  """A bundle's agent checkpoint and counters, copied aside and verified."""

  step: int
  agent_prefix: str  # of the copied agent checkpoint
  state: dict  # the bundle's state.json (`run_state.RunState.save`)

  @property
  def env_steps(self) -> int:
    return self.state["summary"]["env_steps"]

  @property
  def episodes(self) -> int:
    return self.state["summary"]["episodes"]

  @property
  def eval_return(self) -> float | None:
    """The average return of the evaluation at the bundle's step, if there was one."""
    return dict((int(s), r) for s, r in self.state["evals"]).get(self.step)


def copy_agent(root_dir: str, bundle: Bundle, target_dir: str) -> AgentCopy:
  """Copies bundle's agent checkpoint and state.json into `target_dir`, each
  copy checked against the manifest.

  Raises:
    BundleGone: the bundle was deleted while being copied.
    RunDirError: the bundle is damaged.
  """
  agent_rel = os.path.relpath(layout.agent_checkpoint_prefix(root_dir, bundle.step), root_dir)
  state_rel = os.path.relpath(os.path.join(bundle.path, layout.STATE_JSON), root_dir)
  needed = {rel: entry for rel, entry in bundle.manifest["files"].items()
            if rel.startswith(agent_rel + ".") or rel == state_rel}
  shutil.rmtree(target_dir, ignore_errors=True)
  os.makedirs(target_dir)
  for rel, entry in sorted(needed.items()):
    copy = os.path.join(target_dir, os.path.basename(rel))
    try:
      shutil.copyfile(os.path.join(root_dir, rel), copy)
    except FileNotFoundError as e:
      raise BundleGone(bundle.step) from e
    problem = file_problem_at(copy, entry)
    if problem is not None:
      if not os.path.isdir(bundle.path):
        raise BundleGone(bundle.step)
      raise RunDirError(f"checkpoint bundle {bundle.step} is damaged ({rel} {problem}); "
                        "export another one with --step=N (trainer.status lists them)")
  if state_rel not in needed:
    raise RunDirError(f"checkpoint bundle {bundle.step} lists no {layout.STATE_JSON}; "
                      "export another one with --step=N")
  state = fileio.read_json(os.path.join(target_dir, layout.STATE_JSON))
  return AgentCopy(bundle.step, os.path.join(target_dir, os.path.basename(agent_rel)), state)
