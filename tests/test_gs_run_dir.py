"""A job whose --root_dir is gs://, against a real GCS emulator on 127.0.0.1: really
SIGKILLed and SIGTERMed, resumed, and read by the other commands (issue 28)."""

import signal
import subprocess
import sys

from tests.conftest import REPO, TINY_DQN, bindings, cli_env, run_train, start_train, status, wait_for
from trainer import errors
from trainer.storage.remote import RemoteRun

LONG = bindings(TINY_DQN, train__num_iterations=100_000)


def _markers(url: str) -> list[int]:
  run = RemoteRun(url)
  return run.marker_steps(run.listing())


def _cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=300)


def test_a_gs_job_survives_kills_refuses_a_second_job_and_serves_the_other_commands(
    gcs_root, tmp_path):
  first = start_train(gcs_root, gin_bindings=LONG, log_path=tmp_path / "first.log")
  try:
    wait_for(lambda: _markers(gcs_root), 240, "a bundle sealed in the bucket", first)
    second = run_train(gcs_root, gin_bindings=LONG, timeout=120)
    assert second.returncode == errors.EXIT_RUN_DIR, second.stderr
    assert f"run directory {gcs_root} is in use by host" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
  finally:
    first.kill()
  killed = status(gcs_root)
  assert killed["root_dir"] == gcs_root and killed["checkpoints"] == _markers(gcs_root)[-3:]

  # The killed job's lease (a process of this host that is gone) is taken over at once.
  again = start_train(gcs_root, gin_bindings=LONG, log_path=tmp_path / "again.log")
  try:
    wait_for(lambda: _markers(gcs_root)[-1] > killed["train_step"], 240, "a newer bundle", again)
    again.send_signal(signal.SIGTERM)
    rc = again.wait(timeout=120)
  finally:
    again.kill()
  log = (tmp_path / "again.log").read_text()
  assert rc == errors.EXIT_PREEMPTED, log[-3000:]
  assert f"Resumed from step {killed['train_step']}: replay size {killed['replay_size']}" in log
  stopped = status(gcs_root)
  # SIGTERM sealed the bundle of the step where it stopped before the job exited.
  assert stopped["checkpoints"][-1] == stopped["train_step"] == _markers(gcs_root)[-1]
  assert stopped["live"] is None  # the lease was released

  total = stopped["train_step"] + 40
  done = run_train(gcs_root, gin_bindings=bindings(TINY_DQN, train__num_iterations=total))
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"Resumed from step {stopped['train_step']}" in done.stderr
  final = status(gcs_root)
  assert final["complete"] and final["train_step"] == total and not final["exports_missing"]

  onnx = _cli("trainer.export", f"--root_dir={gcs_root}", "--format=onnx")
  assert onnx.returncode == 0, onnx.stderr[-3000:]
  name = f"policies/{total:010d}/greedy.onnx"
  assert onnx.stdout.split() == [f"{gcs_root}/{name}"]
  assert name in RemoteRun(gcs_root).listing()
  plot = _cli("trainer.plot", f"--root_dir={gcs_root}")
  assert plot.returncode == 0 and f"wrote {gcs_root}/eval/curves.png" in plot.stdout, plot.stderr


def _launch(url: str, total: int) -> list[str]:
  return [sys.executable, "-m", "trainer.launch", f"--root_dir={url}", "--collectors=1",
          f"--gin_file={REPO / 'configs' / 'dqn_cartpole.gin'}",
          *(f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=total))]


def test_a_launch_on_gs_seals_the_learners_commits_and_resumes_after_sigterm(gcs_root, tmp_path):
  log_path = tmp_path / "launch.log"
  with open(log_path, "w") as log:
    proc = subprocess.Popen(_launch(gcs_root, 100_000), cwd=REPO, env=cli_env(), stdout=log,
                            stderr=subprocess.STDOUT)
  try:
    wait_for(lambda: _markers(gcs_root), 240, "a bundle sealed by the learner", proc)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
  finally:
    proc.kill()
  assert rc == errors.EXIT_PREEMPTED, log_path.read_text()[-3000:]
  stopped = status(gcs_root)
  assert stopped["checkpoints"][-1] == stopped["train_step"] == _markers(gcs_root)[-1]
  alone = _cli("trainer.learn", f"--root_dir={gcs_root}")
  assert alone.returncode == errors.EXIT_USAGE and "trainer.launch --root_dir=gs://" in alone.stderr

  total = stopped["train_step"] + 40
  done = subprocess.run(_launch(gcs_root, total), cwd=REPO, env=cli_env(), capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
  assert f"Resumed from step {stopped['train_step']}" in done.stdout + done.stderr
  final = status(gcs_root)
  assert final["complete"] and final["train_step"] == total and not final["exports_missing"]


def test_a_sweep_on_gs_runs_its_members_as_gs_runs_and_reports_there(gcs_root):
  sweep = gcs_root.replace("/run", "/sweep")
  cmd = ["trainer.sweep", f"--root_dir={sweep}", f"--gin_file={REPO / 'configs' / 'dqn_cartpole.gin'}",
         *(f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=40)),
         "--grid=create_dqn_agent.learning_rate=[1e-3]", "--seeds=2", "--parallel=2"]
  done = _cli(*cmd)
  assert done.returncode == 0, done.stderr[-3000:]
  for k in range(2):
    member = status(f"{sweep}/members/{sorted(_member_names(sweep))[k]}")
    assert member["complete"] and member["train_step"] == 40
  listing = RemoteRun(sweep).listing()
  assert "sweep.json" in listing and "outcomes.json" in listing
  assert not [rel for rel in listing if rel.endswith((".lock", ".lease"))]  # released, local
  again = _cli("trainer.sweep", f"--root_dir={sweep}")
  assert again.returncode == 0 and "2 complete, 0 to run" in again.stderr, again.stderr[-2000:]
  report = _cli("trainer.report", f"--root_dir={sweep}", "--reps=100")
  assert report.returncode == 0, report.stderr[-2000:]
  assert f"{sweep}/report/report.md" in report.stdout
  assert "report/curves.png" in RemoteRun(sweep).listing()


def _member_names(sweep: str) -> set[str]:
  return {rel.split("/")[1] for rel in RemoteRun(sweep).listing() if rel.startswith("members/")}
