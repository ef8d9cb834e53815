"""trainer.sweep and trainer.report as real processes: a sweep stopped by SIGTERM (75, every
running member committed) and by SIGKILL (its members stop on their own), resumed to
completion with the complete members skipped; a failing member reported while the others
go on; the report's table and pictures, mid-sweep and at the end."""

import json
import re
import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, committed_steps, status
from trainer import errors


def _sweep_cmd(root, *extra) -> list[str]:
  return [sys.executable, "-m", "trainer.sweep", f"--root_dir={root}", *extra]


def _defined(root, total, grid, seeds=2, parallel=2) -> list[str]:
  return _sweep_cmd(root, f"--gin_file={DQN_CONFIG}",
                    *(f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=total)),
                    *(f"--grid={g}" for g in grid), f"--seeds={seeds}", f"--parallel={parallel}")


def _members(root) -> list:
  return sorted((root / "members").iterdir()) if (root / "members").exists() else []


def _wait(predicate, timeout, what, proc):
  deadline = time.monotonic() + timeout
  while not predicate():
    assert proc.poll() is None, f"the sweep exited {proc.returncode} before {what}"
    assert time.monotonic() < deadline, f"timed out waiting for {what}"
    time.sleep(0.5)


def _report(root, *extra):
  return subprocess.run([sys.executable, "-m", "trainer.report", f"--root_dir={root}", "--reps=500",
                         *extra], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                        timeout=300)


def test_a_sweep_stopped_by_sigterm_and_by_sigkill_resumes_to_completion(tmp_path):
  root = tmp_path / "sweep"
  cmd = _defined(root, 150, ["create_dqn_agent.learning_rate=[1e-3, 2e-3]"])
  log = open(tmp_path / "sweep.log", "w")  # noqa: SIM115
  proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
  try:
    _wait(lambda: any(committed_steps(m) for m in _members(root)), 300,
          "a member's first checkpoint", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == errors.EXIT_PREEMPTED, (tmp_path / "sweep.log").read_text()
  finally:
    proc.kill()
  outcomes = json.loads((root / "outcomes.json").read_text())
  stopped = [name for name, o in outcomes.items() if o["state"] == "stopped"]
  assert stopped and all(outcomes[n]["exit_code"] == errors.EXIT_PREEMPTED for n in stopped)
  # Each committed first (a member the signal found still starting up had nothing to commit).
  assert all(committed_steps(root / "members" / n) or outcomes[n]["train_step"] == 0
             for n in stopped)
  assert any(committed_steps(root / "members" / n) for n in stopped)
  mid = _report(root)  # beside a sweep in progress: it names what is not complete
  assert mid.returncode == 0, mid.stderr[-2000:]
  assert "Not complete" in mid.stdout and stopped[0] in mid.stdout

  # The rerun (--root_dir alone: the saved sweep), SIGKILLed: its members stop on their own.
  rerun_log = open(tmp_path / "rerun.log", "w")  # noqa: SIM115
  proc = subprocess.Popen(_sweep_cmd(root), cwd=REPO, env=cli_env(), stdout=rerun_log,
                          stderr=subprocess.STDOUT)
  try:
    _wait(lambda: "started" in (tmp_path / "rerun.log").read_text() and len(
        psutil.Process(proc.pid).children()) > 0, 120, "the rerun's members", proc)
    time.sleep(3)
    members = psutil.Process(proc.pid).children()
    names = [next(a for a in m.cmdline() if a.startswith("--root_dir=")).rsplit("/", 1)[-1]
             for m in members]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    proc.kill()
  # Rerun at once: the killed runner's members, SIGTERMed by the kernel, may still be
  # committing; the rerun waits for each to let go of its run directory, then resumes it.
  final = subprocess.run(_sweep_cmd(root), cwd=REPO, env=cli_env(), capture_output=True,
                         text=True, timeout=600)
  assert final.returncode == errors.EXIT_OK, final.stderr[-3000:]
  assert not psutil.wait_procs(members, timeout=10)[1]
  for name in names:  # each stopped on the kernel's SIGTERM, not by finishing
    killed_run = (root / "logs" / f"{name}.log").read_text().split("starts member")[-2]
    assert "Received SIGTERM" in killed_run, killed_run[-2000:]
  assert "4 members (2 configurations x 2 seeds)" in final.stderr
  assert all(status(m)["complete"] and status(m)["train_step"] == 150 for m in _members(root))
  again = subprocess.run(_sweep_cmd(root), cwd=REPO, env=cli_env(), capture_output=True,
                         text=True, timeout=120)
  assert again.returncode == errors.EXIT_OK and "4 complete, 0 to run" in again.stderr
  changed = subprocess.run(_defined(root, 150, ["create_dqn_agent.learning_rate=[1e-3, 5e-3]"]),
                           cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert changed.returncode == errors.EXIT_USAGE
  assert "grid create_dqn_agent.learning_rate: [0.001, 0.002] -> [0.001, 0.005]" in changed.stderr

  done = _report(root, "--target=15")
  assert done.returncode == 0, done.stderr[-2000:]
  rows = [line for line in done.stdout.splitlines() if re.match(r"\| c\d+: ", line)]
  assert [r.split("|")[1].strip() for r in rows] == ["c0: learning_rate=0.001",
                                                     "c1: learning_rate=0.002"]
  assert all(r.rstrip(" |").endswith("2/2 / 0") for r in rows)
  assert "Not complete" not in done.stdout
  for name in ("report.md", "report.csv", "report.json", "curves.png", "profile.png"):
    assert (root / "report" / name).stat().st_size > 0, name
  table = json.loads((root / "report" / "report.json").read_text())["configs"]
  assert all(row["final"]["low"] <= row["final"]["iqm"] <= row["final"]["high"] for row in table)


def test_a_failing_member_is_reported_and_the_others_complete(tmp_path):
  root = tmp_path / "sweep"
  out = subprocess.run(_defined(root, 20, ["create_gym_environment.name=['CartPole-v0', "
                                           "'NoSuchEnv-v0']"], seeds=1),
                       cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == errors.EXIT_CRASH, out.stderr[-3000:]
  assert "Member c1_seed0 (name='NoSuchEnv-v0', seed 0) failed: exit 2" in out.stderr
  assert "1 failed member(s): c1_seed0" in out.stderr
  assert status(root / "members" / "c0_seed0")["complete"]
  outcomes = json.loads((root / "outcomes.json").read_text())
  assert outcomes["c1_seed0"]["state"] == "failed" and outcomes["c0_seed0"]["state"] == "complete"
  shown = _report(root)
  assert shown.returncode == 0, shown.stderr[-2000:]
  assert "Failed: c1_seed0" in shown.stdout
