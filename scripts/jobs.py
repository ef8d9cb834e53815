"""Helpers for scripts that drive real training processes (chaos, resume fidelity)."""

import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from trainer.cli.status import run_status  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DQN_CONFIG = REPO / "configs" / "dqn_cartpole.gin"


def env() -> dict:
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
          "PYTHONPATH": str(REPO)}


def train_cmd(root: pathlib.Path, bindings: dict, config: pathlib.Path = DQN_CONFIG) -> list[str]:
  cmd = [sys.executable, "-m", "trainer.train", f"--root_dir={root}", f"--gin_file={config}"]
  return cmd + [f"--gin_bindings={k} = {v}" for k, v in bindings.items()]


def start(root: pathlib.Path, bindings: dict, log_path: pathlib.Path) -> subprocess.Popen:
  log_path.parent.mkdir(parents=True, exist_ok=True)
  with open(log_path, "w") as log:
    return subprocess.Popen(train_cmd(root, bindings), cwd=REPO, env=env(), stdout=log,
                            stderr=subprocess.STDOUT)


def status(root: pathlib.Path | str) -> dict:
  """`trainer.status --json` of a run directory (or a gs:// one), in-process (it loads no
  TensorFlow)."""
  if str(root).startswith("gs://"):
    from trainer.cli import status as status_cli
    from trainer.storage import sessions

    with sessions.reading_view(str(root), status_cli.status_reads) as view:
      return run_status(view.path, view=view)
  return run_status(str(root))
