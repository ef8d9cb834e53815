r"""Chaos suite, roles mode: SIGKILL the roles of a job run by `trainer.launch`.

  python scripts/chaos_roles.py --kills=20        # part of `make chaos`
  python scripts/chaos_roles.py --kills=3         # the short version in `make test`

The job is the default DQN config shrunk to seconds, run as a replay server,
the learner and two collectors, with bundles and exports every few steps.
Each kill picks a role (the server, a collector, the learner, or everything:
launch and every role at once, as a lost node) at a random moment; one kill
in four waits for a bundle to commit first and kills right after it. launch
restarts a killed role; after "everything", the script reruns launch. After
each kill it checks:

- the committed train step never goes back;
- a restarted learner resumes from the newest committed bundle;
- every export visible in the policy directory loads and acts;
- no export step at or below the committed step is missing;
- at the end, `trainer.status` lists every role, none alive.

Then it stops the job with SIGTERM (exit 75) and reruns it to a total just
past the committed step: it must complete (exit 0). The last line is a
summary; the exit code is non-zero on any failure.
"""

import argparse
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from chaos import ExportChecker
from jobs import DQN_CONFIG, REPO, env, status

from trainer.roles import rolefiles

BINDINGS = {
    "train.checkpoint_interval": 20,
    "train.policy_export_interval": 30,
    "train.eval_interval": 0,
    "train.initial_collect_steps": 50,
    "train.batch_size": 8,
    "train.log_interval": 20,
    "train.summary_interval": 0,
    "train.keep_checkpoints": 2,
    "train.collect_steps_per_iteration": 4,
    "train.train_steps_per_iteration": 4,
    "create_dqn_agent.fc_layer_params": "(16,)",
    "create_uniform_replay.capacity": 5000,
    "create_gym_environment.max_episode_steps": 50,
}
TARGETS = ("replay_server", "collector-0", "collector-1", "learner", "everything")
RESUMED = re.compile(r"Resumed from step (\d+)")


def _beat(root: pathlib.Path, role: str) -> dict:
  return rolefiles.read(str(root), role) or {}


def _kill(pid: int | None) -> int | None:
  if pid:
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      return None
  return pid


def _gone(pids: list[int | None], timeout_s: float = 60.0) -> None:
  """Waits for SIGKILLed processes to be gone, as a lost node's are before its job is
  requeued: a large process takes a moment to die, and holds its run lock until then
  (a launch started meanwhile is refused, exit 3, naming it)."""
  deadline = time.monotonic() + timeout_s
  for pid in filter(None, pids):
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
      try:  # a zombie is gone for the lock's purposes: its files are closed
        if pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
          break
      except OSError:
        break
      time.sleep(0.02)


class RolesChaos:
  def __init__(self, root: pathlib.Path, rng: random.Random, exports: ExportChecker):
    self.root, self.rng, self.exports = root, rng, exports
    self.bindings = {**BINDINGS, "train.num_iterations": 10**9}
    self.kills: dict[str, int] = {t: 0 for t in TARGETS}
    self.after_commit = 0
    self.failures: list[str] = []
    self.checked: set[str] = set()
    self.launches = 0
    self.committed = 0
    self.proc = None

  def fail(self, kind: str, message: str) -> None:
    self.failures.append(message)
    print(f"FAIL [{kind}] {message}", flush=True)

  def launch(self, bindings: dict) -> subprocess.Popen:
    self.launches += 1
    log = open(self.root.parent / f"launch-{self.launches}.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "trainer.launch", f"--root_dir={self.root}", "--collectors=2",
           f"--gin_file={DQN_CONFIG}", *(f"--gin_bindings={k} = {v}" for k, v in bindings.items())]
    return subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=log, stderr=subprocess.STDOUT)

  def wait_training(self, timeout: float = 300) -> bool:
    """Until the learner trains (its heartbeat names a step past the committed one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        self.fail("exit", f"launch exited with {self.proc.returncode} during the chaos")
        return False
      beat = _beat(self.root, "learner")
      if beat.get("train_step", -1) > self.committed and not beat.get("stopped"):
        return True
      time.sleep(0.1)
    self.fail("start", f"the learner did not train within {timeout:.0f} s")
    return False

  def kill_one(self) -> None:
    target = self.rng.choice(TARGETS)
    if self.rng.random() < 0.25:  # right after a bundle commits
      before = self.committed_step()
      deadline = time.monotonic() + 120
      while self.committed_step() == before and time.monotonic() < deadline:
        time.sleep(0.005)
      self.after_commit += 1
    else:
      time.sleep(self.rng.uniform(0.0, 4.0))
    learner_log = self.root / "roles" / "logs" / "learner.log"
    log_size = learner_log.stat().st_size if learner_log.exists() else 0
    if target == "everything":
      killed = [_kill(self.proc.pid)]
      killed += [_kill(_beat(self.root, role).get("pid")) for role in TARGETS[:-1]]
      self.proc.wait()
      _gone(killed)
      self.proc = self.launch(self.bindings)
    else:
      _kill(_beat(self.root, target).get("pid"))
    self.kills[target] += 1
    expected = self.committed_step()
    print(f"kill {sum(self.kills.values())}: {target}; committed step {expected}", flush=True)
    if target in ("learner", "everything"):
      self.check_learner_resume(learner_log, log_size, expected)
    self.check()

  def check_learner_resume(self, log: pathlib.Path, offset: int, expected: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
      text = log.read_text()[offset:] if log.exists() else ""
      found = RESUMED.search(text)
      if found:
        if int(found.group(1)) < expected:
          self.fail("resume", f"the learner resumed from {found.group(1)}, not the newest "
                              f"committed bundle {expected}")
        return
      if "Starting " in text and expected:
        self.fail("resume", f"the learner started afresh although bundle {expected} existed")
        return
      time.sleep(0.2)
    self.fail("resume", "the restarted learner did not resume within 300 s")

  def committed_step(self) -> int:
    try:
      return status(self.root)["train_step"]
    except Exception:  # noqa: BLE001  (no run yet)
      return 0

  def check(self) -> None:
    report = status(self.root)
    if report["train_step"] < self.committed:
      self.fail("regress", f"committed step went from {self.committed} to {report['train_step']}")
    self.committed = max(self.committed, report["train_step"])
    if report["exports_missing"]:
      self.fail("grid", f"exports missing at {report['exports_missing']}")
    policies = self.root / "policies"
    for path in sorted(str(p) for p in policies.glob("[0-9]" * 10)):
      if path in self.checked:
        continue
      problem = self.exports.check(path)
      if problem is not None and pathlib.Path(path).exists():  # not pruned meanwhile
        self.fail("export", f"{path}: {problem}")
      self.checked.add(path)

  def run(self, kills: int) -> None:
    self.proc = self.launch(self.bindings)
    while sum(self.kills.values()) < kills:
      if not self.wait_training():
        return
      self.kill_one()
    if not self.wait_training():
      return
    self.proc.send_signal(signal.SIGTERM)
    rc = self.proc.wait(timeout=300)
    if rc != 75:
      self.fail("stop", f"launch exited {rc} on SIGTERM, not 75")
    self.check()
    # Its roles may outlive launch by a moment (a large process dying holds the run lock).
    _gone([_beat(self.root, role).get("pid") for role in TARGETS[:-1]])
    # The rest of the run: a total just past the committed step (accepted on resume).
    self.proc = self.launch({**self.bindings, "train.num_iterations": self.committed + 40})
    rc = self.proc.wait(timeout=600)
    final = status(self.root)
    if rc != 0 or not final["complete"]:
      self.fail("finish", f"the final launch exited {rc}, status {final}")
    roles = {r["role"]: r for r in final["roles"]}
    if set(roles) != {"replay_server", "learner", "collector-0", "collector-1"} or any(
        r["alive"] for r in roles.values()):
      self.fail("status", f"trainer.status lists the roles {final['roles']}")
    self.check()


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=None)
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="trainer-chaos-roles-"))
  workdir.mkdir(parents=True, exist_ok=True)
  exports = ExportChecker()
  chaos = RolesChaos(workdir / "run", random.Random(args.seed), exports)
  started = time.monotonic()
  try:
    chaos.run(args.kills)
  finally:
    if chaos.proc is not None and chaos.proc.poll() is None:
      chaos.proc.send_signal(signal.SIGTERM)
      chaos.proc.wait(timeout=300)
    exports.close()
  kills = ", ".join(f"{t} {n}" for t, n in chaos.kills.items())
  print(f"roles: kills: {sum(chaos.kills.values())} ({kills}; {chaos.after_commit} right after a "
        f"commit), failures: {len(chaos.failures)}, committed step {chaos.committed}, "
        f"{time.monotonic() - started:.0f} s ({workdir})", flush=True)
  return 1 if chaos.failures else 0


if __name__ == "__main__":
  sys.exit(main())
