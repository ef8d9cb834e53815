"""trainer.launch's supervision (trainer/roles/supervisor.py) on fake processes and
a fake clock: restarts, back-off, the failure window and limit, refusals, the stop
order and its grace. No TensorFlow job, no real process: seconds of fake time are free.
The roles as real processes: tests/test_launch.py and tests/test_chaos.py."""

import signal

import pytest

from trainer.errors import EXIT_CRASH, EXIT_OK, EXIT_PREEMPTED, EXIT_RUN_DIR
from trainer.roles import supervisor
from trainer.roles.supervisor import RoleSpec, Supervisor

FOREVER = float("inf")


class FakeClock:
  LIMIT_S = 10_000.0  # a supervisor still waiting then would wait forever

  def __init__(self):
    self.now = 0.0

  def monotonic(self) -> float:
    return self.now

  def sleep(self, seconds: float) -> None:
    self.now += seconds
    assert self.now < self.LIMIT_S, "the supervisor waits without end"


class FakeProcess:
  """Exits with `code` after `life` seconds; on SIGTERM exits `term_code` after
  `term_delay` (never, with `term_delay=FOREVER`); SIGKILL ends it at once."""

  def __init__(self, clock: FakeClock, life: float = FOREVER, code: int = 1,
               term_delay: float = 0.0, term_code: int = EXIT_PREEMPTED):
    self.clock, self.started = clock, clock.now
    self.ends_at, self.code = clock.now + life, code
    self.term_delay, self.term_code = term_delay, term_code
    self.signals: list[tuple[float, int]] = []
    self.returncode = None

  def poll(self) -> int | None:
    if self.returncode is None and self.clock.now >= self.ends_at:
      self.returncode = self.code
    return self.returncode

  def send_signal(self, signum: int) -> None:
    self.signals.append((self.clock.now, signum))
    if signum == signal.SIGKILL:
      self.ends_at, self.code = self.clock.now, -signal.SIGKILL
    elif self.clock.now + self.term_delay < self.ends_at:
      self.ends_at, self.code = self.clock.now + self.term_delay, self.term_code

  def wait(self) -> int:
    assert self.poll() is not None, "wait() on a process that never ends"
    return self.returncode


class Job:
  """Three roles (server, learner, one collector); `scripts[name]`: the keyword
  arguments of each start's FakeProcess in turn (then: runs until stopped)."""

  def __init__(self, stop_at: float = FOREVER, **scripts: list[dict]):
    self.clock = FakeClock()
    self.scripts = {name: list(runs) for name, runs in scripts.items()}
    self.started: dict[str, list[FakeProcess]] = {}
    self.lines: list[str] = []
    roles = [RoleSpec(name, ("role",), f"/logs/{name}.log") for name in
             ("replay_server", "learner", "collector-0")]
    self.supervisor = Supervisor(roles, learner="learner", start=self._start, clock=self.clock,
                                 say=self.lines.append,
                                 stop_requested=lambda: self.clock.now >= stop_at)

  def _start(self, spec: RoleSpec) -> FakeProcess:
    runs = self.scripts.get(spec.name, [])
    process = FakeProcess(self.clock, **(runs.pop(0) if runs else {}))
    self.started.setdefault(spec.name, []).append(process)
    return process

  def run(self) -> int:
    return self.supervisor.run()


@pytest.mark.fast
def test_backoff_doubles_to_its_cap():
  assert [supervisor.backoff(n) for n in (1, 2, 3, 6, 20)] == [1, 2, 4, 30, 30]


@pytest.mark.fast
def test_a_role_failing_5_times_in_the_window_stops_the_job_after_4_backed_off_restarts():
  job = Job(**{"collector-0": [{"life": 0.0}] * 10})
  assert job.run() == EXIT_CRASH
  starts = [p.started for p in job.started["collector-0"]]
  assert len(starts) == supervisor.MAX_FAILURES == 5
  gaps = [round(b - a) for a, b in zip(starts, starts[1:], strict=False)]
  assert gaps == [1, 2, 4, 8]  # each restart after its back-off
  assert "its 5th failure within 120 s: not restarting it" in job.lines[-1]
  for name in ("replay_server", "learner"):  # every role stopped
    assert job.started[name][0].signals[0][1] == signal.SIGTERM


@pytest.mark.fast
def test_failures_older_than_the_window_do_not_count():
  runs = [{"life": 0.0}] * 4 + [{"life": 200.0}] + [{"life": 0.0}] * 2
  job = Job(learner=[{"life": 400.0, "code": EXIT_OK}], **{"collector-0": runs})
  assert job.run() == EXIT_OK
  restarts = [line for line in job.lines if line.startswith("collector-0 exited")]
  assert [r.split("restarting it in ")[1][:4] for r in restarts] == [
      "1 s ", "2 s ", "4 s ", "8 s ", "1 s ", "2 s ", "4 s "]  # the window forgot the first 4
  assert job.lines[-1] == "The learner reached its total: stopping the other roles."


@pytest.mark.fast
def test_a_role_refusing_its_run_directory_is_not_restarted():
  job = Job(replay_server=[{"life": 3.0, "code": EXIT_RUN_DIR}])
  assert job.run() == EXIT_RUN_DIR
  assert len(job.started["replay_server"]) == 1
  assert "replay_server exited with code 3: it would refuse again" in job.lines[-1]


@pytest.mark.fast
def test_a_stop_stops_the_learner_first_and_restarts_a_server_that_dies_meanwhile():
  job = Job(stop_at=10.0, learner=[{"term_delay": 60.0}],
            replay_server=[{"life": 30.0}])
  assert job.run() == EXIT_PREEMPTED
  learner = job.started["learner"][0]
  collector = job.started["collector-0"][0]
  assert learner.signals[0] == (pytest.approx(10.0, abs=0.5), signal.SIGTERM)
  assert collector.signals[0][0] == pytest.approx(70.0, abs=0.5)  # only once the learner is done
  assert len(job.started["replay_server"]) == 2  # died at 30 s, during the stop: restarted
  assert "committed a checkpoint and stopped" in job.lines[-1]


@pytest.mark.fast
def test_a_learner_that_outlives_the_stop_grace_is_killed_and_launch_exits_1():
  job = Job(stop_at=10.0, learner=[{"term_delay": FOREVER}])
  assert job.run() == EXIT_CRASH
  learner = job.started["learner"][0]
  kill_time, signum = learner.signals[1]
  assert signum == signal.SIGKILL
  assert kill_time - 10.0 == pytest.approx(supervisor.STOP_GRACE_S, abs=0.5)
  assert f"did not stop within {supervisor.STOP_GRACE_S:.0f} s" in job.lines[-1]


@pytest.mark.fast
def test_at_the_total_the_others_are_stopped_and_one_that_hangs_is_killed():
  job = Job(learner=[{"life": 50.0, "code": EXIT_OK}],
            **{"collector-0": [{"term_delay": FOREVER}]})
  assert job.run() == EXIT_OK
  collector = job.started["collector-0"][0]
  assert [s for _, s in collector.signals] == [signal.SIGTERM, signal.SIGKILL]
  assert collector.signals[1][0] - collector.signals[0][0] == pytest.approx(
      supervisor.OTHERS_GRACE_S, abs=0.5)
  assert "collector-0 did not stop within 10 s: killing it" in job.lines[-1]
  server = job.started["replay_server"][0]
  assert server.returncode == EXIT_PREEMPTED
  # The server is stopped after the collectors, SERVER_AFTER_S later at most (it frees a
  # collector held in a write).
  assert server.signals[0][0] - collector.signals[0][0] == pytest.approx(
      supervisor.SERVER_AFTER_S, abs=0.5)
