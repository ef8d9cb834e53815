"""Cluster templates: the sbatch scripts' signal forwarding and requeue; the Kubernetes
manifests, valid against the Kubernetes API schema and wired to the trainer's exit codes."""

import os
import signal
import subprocess
import sys

import kubernetes_validate
import psutil
import pytest
import yaml

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, committed_steps, status, wait_for
from trainer import errors

SBATCH = REPO / "cluster" / "slurm" / "train.sbatch"
JOB_YAML = REPO / "cluster" / "kubernetes" / "train-job.yaml"
MANIFESTS = sorted((REPO / "cluster" / "kubernetes").glob("*.yaml"))
# The oldest Kubernetes the manifests are for: podFailurePolicy is GA from 1.31.
KUBERNETES_VERSION = "1.31.0"


def _resources(path) -> list[dict]:
  return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.fast
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path):
  """Strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict` has it."""
  resources = _resources(path)
  assert resources, f"{path.name} holds no resource"
  for resource in resources:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.fast
def test_a_misspelt_or_missing_field_fails_the_schema_check():
  job = next(d for d in _resources(JOB_YAML) if d["kind"] == "Job")
  pod = job["spec"]["template"]["spec"]
  pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")
  with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriodSecond"):
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
  job = next(d for d in _resources(JOB_YAML) if d["kind"] == "Job")
  rule = next(r for r in job["spec"]["podFailurePolicy"]["rules"] if "onPodConditions" in r)
  del rule["onPodConditions"][0]["status"]  # optional from Kubernetes 1.37 only
  with pytest.raises(kubernetes_validate.ValidationError, match="'status' is a required property"):
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


@pytest.fixture
def slurm_env(tmp_path):
  """Runs the batch script outside Slurm: a stub `scontrol` records its calls."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  calls = tmp_path / "scontrol.calls"
  stub = bin_dir / "scontrol"
  stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
  stub.chmod(0o755)
  env = cli_env()
  env.update(PATH=f"{bin_dir}:{env['PATH']}", ROOT_DIR=str(tmp_path / "run"), GIN_FILE=DQN_CONFIG,
             PYTHON=sys.executable, SLURM_JOB_ID="4242")
  return env, calls, tmp_path / "run"


def _sbatch(env, total, log):
  args = [f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=total)]
  return subprocess.Popen(["bash", str(SBATCH), *args], cwd=REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT)


@pytest.mark.parametrize("delivery", ["batch_shell_only", "every_process"])
def test_sbatch_forwards_sigterm_and_requeues(slurm_env, tmp_path, delivery):
  """batch_shell_only: `--signal=B:TERM@...` before the time limit.
  every_process: preemption or scancel, where Slurm signals the trainer too."""
  env, calls, root = slurm_env
  with open(tmp_path / "job.log", "w") as log:
    shell = _sbatch(env, 100_000, log)
    try:
      wait_for(lambda: committed_steps(root), 240, "the first bundle", shell)
      targets = [shell.pid]
      if delivery == "every_process":
        targets += [p.pid for p in psutil.Process(shell.pid).children(recursive=True)]
      for pid in targets:
        os.kill(pid, signal.SIGTERM)
      rc = shell.wait(timeout=120)
    finally:
      shell.kill()
  output = (tmp_path / "job.log").read_text()
  assert rc == errors.EXIT_PREEMPTED, output[-3000:]
  assert calls.read_text().split() == ["requeue", "4242"]
  stopped = status(root)
  assert stopped["checkpoints"][-1] == stopped["train_step"]

  # The requeued job: the same script resumes and finishes; no requeue this time.
  calls.unlink()
  with open(tmp_path / "requeued.log", "w") as log:
    rerun = _sbatch(env, stopped["train_step"] + 20, log)
    assert rerun.wait(timeout=300) == 0
  assert f"Resumed from step {stopped['train_step']}" in (tmp_path / "requeued.log").read_text()
  assert not calls.exists()
  assert status(root)["complete"]


def test_sbatch_header_asks_for_requeue_and_an_early_signal():
  header = [line for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
  assert "#SBATCH --requeue" in header
  assert any(line.startswith("#SBATCH --signal=B:TERM@") for line in header)


@pytest.mark.fast
def test_kubernetes_job_manifest():
  docs = list(yaml.safe_load_all(JOB_YAML.read_text()))
  pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
  job = next(d for d in docs if d["kind"] == "Job")
  spec = job["spec"]
  pod = spec["template"]["spec"]
  assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
  assert pod["terminationGracePeriodSeconds"] >= 120
  rules = spec["podFailurePolicy"]["rules"]
  reruns = [r for r in rules if r["action"] == "Ignore" and "onExitCodes" in r]
  assert reruns and reruns[0]["onExitCodes"]["values"] == [errors.EXIT_PREEMPTED]
  disrupted = [{"type": "DisruptionTarget", "status": "True"}]
  assert any(r["action"] == "Ignore" and r.get("onPodConditions") == disrupted for r in rules)
  fail_fast = [r for r in rules if r["action"] == "FailJob"]
  assert fail_fast[0]["onExitCodes"]["values"] == [errors.EXIT_USAGE]
  container = pod["containers"][0]
  assert container["command"][:3] == ["python", "-m", "trainer.train"]  # exec form: PID 1
  root = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--root_dir="))
  mount = container["volumeMounts"][0]
  assert root.startswith(mount["mountPath"] + "/")
  volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
  assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


ROLES_SBATCH = REPO / "cluster" / "slurm" / "roles.sbatch"
ROLES_YAML = REPO / "cluster" / "kubernetes" / "roles.yaml"


def test_roles_sbatch_runs_every_role_as_a_step_and_requeues(slurm_env, tmp_path):
  """Under bash with a stub `srun` (runs the step's command) and `scontrol`: the
  server, the learner and two collectors run; SIGTERM stops the learner first (a
  bundle at its step), then the others; 75 and a requeue."""
  env, calls, root = slurm_env
  srun = tmp_path / "bin" / "srun"
  srun.write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
  srun.chmod(0o755)
  env.update(COLLECTORS="2", PORT=str(launch_port()), SERVER_HOST="localhost")
  args = [f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=100_000,
                                                   train__checkpoint_interval=100,
                                                   train__policy_export_interval=100)]
  with open(tmp_path / "job.log", "w") as log:
    shell = subprocess.Popen(["bash", str(ROLES_SBATCH), *args], cwd=REPO, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
      wait_for(lambda: committed_steps(root), 240, "the first bundle", shell)
      shell.send_signal(signal.SIGTERM)
      rc = shell.wait(timeout=120)
    finally:
      shell.kill()
  output = (tmp_path / "job.log").read_text()
  assert rc == errors.EXIT_PREEMPTED, output[-3000:]
  assert calls.read_text().split() == ["requeue", "4242"]
  learner_log = (root / "roles" / "logs" / "learner.log").read_text()
  stopped = status(root)
  assert f"Stopped at step {stopped['train_step']}" in learner_log
  assert stopped["checkpoints"][-1] == stopped["train_step"]
  assert {r["role"] for r in stopped["roles"]} == {"replay_server", "learner", "collector-0",
                                                   "collector-1"}
  assert not any(r["alive"] for r in stopped["roles"])


def launch_port() -> int:
  import portpicker  # the sbatch script's fixed --port, as an admin would pick one
  return portpicker.pick_unused_port()


@pytest.mark.fast
def test_roles_manifests_share_one_volume_and_rerun_on_75():
  docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(ROLES_YAML.read_text())}
  pvc = docs[("PersistentVolumeClaim", "trainer-roles-runs")]
  assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
  service = docs[("Service", "trainer-replay")]
  server = docs[("StatefulSet", "trainer-replay")]
  learner = docs[("Job", "trainer-learner")]
  collectors = docs[("Job", "trainer-collectors")]
  port = service["spec"]["ports"][0]["port"]
  address = f"--replay_address={service['metadata']['name']}:{port}"

  def container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]

  assert container(server)["command"] == ["python", "-m", "trainer.replay_server"]
  assert f"--port={port}" in container(server)["args"]
  assert container(learner)["command"] == ["python", "-m", "trainer.learn"]
  assert address in container(learner)["args"] and address in container(collectors)["args"]
  assert collectors["spec"]["completionMode"] == "Indexed"
  assert "--task=$(JOB_COMPLETION_INDEX)" in container(collectors)["args"]
  roots = set()
  for doc in (server, learner, collectors):
    pod = doc["spec"]["template"]["spec"]
    volume = pod["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "trainer-roles-runs"
    roots.add(next(a for a in container(doc)["args"] if a.startswith("--root_dir=")))
  assert len(roots) == 1  # one run directory for every role
  for job in (learner, collectors):
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert any(r["action"] == "Ignore" and r.get("onExitCodes", {}).get("values") ==
               [errors.EXIT_PREEMPTED] for r in rules)
    assert any(r["action"] == "FailJob" and r["onExitCodes"]["values"] == [errors.EXIT_USAGE]
               for r in rules)
  assert learner["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 120


@pytest.mark.fast
def test_roles_manifests_admit_only_the_jobs_pods_to_the_replay_server():
  docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(ROLES_YAML.read_text())}
  server = docs[("StatefulSet", "trainer-replay")]
  policy = docs[("NetworkPolicy", "trainer-replay")]["spec"]
  port = docs[("Service", "trainer-replay")]["spec"]["ports"][0]["port"]
  labels = {name: doc["spec"]["template"]["metadata"]["labels"] for name, doc in
            (("server", server), ("learner", docs[("Job", "trainer-learner")]),
             ("collectors", docs[("Job", "trainer-collectors")]))}
  # The policy selects the server's pods, admits ingress only from pods with the job's label,
  # and only to the server's port; every role's pods carry that label.
  assert policy["podSelector"]["matchLabels"].items() <= labels["server"].items()
  assert policy["policyTypes"] == ["Ingress"] and len(policy["ingress"]) == 1
  rule = policy["ingress"][0]
  [source] = rule["from"]
  assert set(source) == {"podSelector"}  # no namespaceSelector or ipBlock: nothing wider
  admitted = source["podSelector"]["matchLabels"]
  assert all(admitted.items() <= pod.items() for pod in labels.values()), (admitted, labels)
  assert rule["ports"] == [{"protocol": "TCP", "port": port}]
  # The server listens on its pod's address alone.
  container = server["spec"]["template"]["spec"]["containers"][0]
  assert "--bind=$(POD_IP)" in container["args"]
  assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in \
      container["env"]


SWEEP_SBATCH = REPO / "cluster" / "slurm" / "sweep.sbatch"
SWEEP_YAML = REPO / "cluster" / "kubernetes" / "sweep-job.yaml"


def test_sweep_sbatch_runs_its_array_tasks_member_and_requeues_that_task(slurm_env, tmp_path):
  """Array task 1 of a 2-member sweep under bash (stub `scontrol`): it writes the sweep's
  definition, runs member 1 alone, and on SIGTERM that member commits, the task exits 75 and
  requeues itself (JOBID_TASK); requeued, it resumes and completes."""
  env, calls, root = slurm_env
  env.update(SLURM_ARRAY_JOB_ID="4242", SLURM_ARRAY_TASK_ID="1")
  args = [f"--gin_file={DQN_CONFIG}", "--seeds=2",
          *(f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=150))]
  member = root / "members" / "c0_seed1"

  def task(log):
    return subprocess.Popen(["bash", str(SWEEP_SBATCH), *args], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)

  with open(tmp_path / "task.log", "w") as log:
    shell = task(log)
    try:
      wait_for(lambda: committed_steps(member), 240, "member 1's first bundle", shell)
      shell.send_signal(signal.SIGTERM)
      rc = shell.wait(timeout=120)
    finally:
      shell.kill()
  assert rc == errors.EXIT_PREEMPTED, (tmp_path / "task.log").read_text()[-3000:]
  assert calls.read_text().split() == ["requeue", "4242_1"]
  assert not (root / "members" / "c0_seed0").exists()  # the other task's member
  assert "train.seed = 1" in (member / "config.gin").read_text()
  calls.unlink()
  with open(tmp_path / "requeued.log", "w") as log:
    assert task(log).wait(timeout=300) == errors.EXIT_OK
  assert "Resumed from step" in (tmp_path / "requeued.log").read_text()
  assert not calls.exists() and status(member)["complete"]


def test_sweep_sbatch_header_asks_for_requeue_and_an_early_signal():
  header = [line for line in SWEEP_SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
  assert "#SBATCH --requeue" in header
  assert any(line.startswith("#SBATCH --signal=B:TERM@") for line in header)


@pytest.mark.fast
def test_sweep_manifest_runs_one_member_per_index_and_as_many_indexes_as_members(tmp_path):
  docs = list(yaml.safe_load_all(SWEEP_YAML.read_text()))
  pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
  job = next(d for d in docs if d["kind"] == "Job")
  spec, pod = job["spec"], job["spec"]["template"]["spec"]
  assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
  assert spec["completionMode"] == "Indexed" and pod["restartPolicy"] == "Never"
  assert pod["terminationGracePeriodSeconds"] >= 120
  rules = spec["podFailurePolicy"]["rules"]
  assert any(r["action"] == "Ignore" and r.get("onExitCodes", {}).get("values") ==
             [errors.EXIT_PREEMPTED] for r in rules)
  assert any(r["action"] == "Ignore" and r.get("onPodConditions") ==
             [{"type": "DisruptionTarget", "status": "True"}] for r in rules)
  assert any(r["action"] == "FailIndex" and r["onExitCodes"]["values"] == [errors.EXIT_USAGE]
             for r in rules)
  assert spec["backoffLimitPerIndex"] >= 1  # FailIndex needs it
  container = pod["containers"][0]
  assert container["command"] == ["python", "-m", "trainer.sweep"]  # exec form: PID 1
  assert "--member=$(JOB_COMPLETION_INDEX)" in container["args"]
  root = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--root_dir="))
  mount = container["volumeMounts"][0]
  assert root.startswith(mount["mountPath"] + "/")
  volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
  assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
  # Its definition, prepared here, has exactly `completions` members.
  definition = [a for a in container["args"] if not a.startswith(("--root_dir=", "--member="))]
  prepared = subprocess.run([sys.executable, "-m", "trainer.sweep",
                             f"--root_dir={tmp_path / 'sweep'}", *definition, "--prepare"],
                            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert prepared.returncode == 0, prepared.stderr
  assert f"{spec['completions']} members in" in prepared.stdout
