r"""The role commands: each runs one role of a job on a shared run directory.

  python -m trainer.replay_server --root_dir=DIR --gin_file=X.gin [--port=P] [--host=H]
  python -m trainer.collect --root_dir=DIR --gin_file=X.gin --task=I [--replay_address=H:P]
  python -m trainer.learn --root_dir=DIR --gin_file=X.gin [--replay_address=H:P]

Every role takes the job's config (`--gin_file`/`--gin_bindings`, or the run's
saved config with `--root_dir` alone). Without `--replay_address` the learner
and the collectors read the server's address from `DIR/roles/`. SIGTERM stops
a role (the learner after committing a bundle); each exits 75 then.
"""

import functools

from trainer.cli import quiet  # noqa: E402  (first: before TensorFlow and Gym load)

quiet.before_imports()

from absl import flags  # noqa: E402

from trainer import errors  # noqa: E402
from trainer.cli import shell  # noqa: E402
from trainer.config import gin_config  # noqa: E402
from trainer.rundir.signals import StopRequest  # noqa: E402
from trainer.storage import urls  # noqa: E402

flags.DEFINE_string("root_dir", None, "Run directory, shared by every role.")
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
FLAGS = flags.FLAGS


def _config(argv: list[str], *, allow_config_change: bool) -> gin_config.RunConfig:
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments {argv[1:]}; use --gin_bindings for settings")
  if urls.is_remote(FLAGS.root_dir):
    raise errors.ConfigError(
        f"a role alone cannot take --root_dir={FLAGS.root_dir}: the roles meet through a shared "
        f"directory; run the job with python -m trainer.launch --root_dir={FLAGS.root_dir} "
        "(its roles share a staging directory on one machine)")
  # What needs no TensorFlow first: a bad command line is refused in a fraction of a second.
  gin_config.precheck(FLAGS.root_dir, FLAGS.gin_file, FLAGS.gin_bindings)
  from trainer.cli import registry  # noqa: F401  (what configs name; loads TensorFlow)

  return gin_config.load(FLAGS.root_dir, FLAGS.gin_file, FLAGS.gin_bindings,
                         allow_config_change=allow_config_change)


def _server_main(argv: list[str], stop: StopRequest) -> int:
  # The learner decides whether a changed config may resume; the server serves it.
  run_config = _config(argv, allow_config_change=True)
  from trainer.roles import replay_server
  return replay_server.serve(FLAGS.root_dir, run_config, stop, port=FLAGS.port, host=FLAGS.host,
                             bind=FLAGS.bind or FLAGS.host)


def _collect_main(argv: list[str], stop: StopRequest) -> int:
  run_config = _config(argv, allow_config_change=True)
  from trainer.roles import collect
  return collect.CollectorRole(FLAGS.root_dir, run_config, FLAGS.task, FLAGS.replay_address,
                               stop).run()


def _learn_main(argv: list[str], stop: StopRequest) -> int:
  run_config = _config(argv, allow_config_change=FLAGS.allow_config_change)
  from trainer.roles import learn
  from trainer.storage import sessions

  with sessions.sealing_learner(FLAGS.root_dir):  # under a launch on gs://: seals each commit
    return learn.learn(FLAGS.root_dir, run_config, stop, FLAGS.replay_address)


def server_entry(stop: StopRequest) -> None:
  flags.DEFINE_integer("port", 0, "Port to serve on (0: any free port).")
  flags.DEFINE_string("host", None, "Host name the others reach it by (default: this "
                      "machine's name), written with the port into DIR/roles/.")
  flags.DEFINE_string("bind", None, "Address to listen on: an IP address or a name (default: "
                      "what --host resolves to); 'all' listens on every interface "
                      "(docs/security.md).")
  import socket
  flags.FLAGS.set_default("host", socket.gethostname())
  shell.run(functools.partial(_server_main, stop=stop), prog="trainer.replay_server",
            exit_at_once=True)


def collect_entry(stop: StopRequest) -> None:
  flags.DEFINE_integer("task", None, "This collector's number, 0 to N-1.")
  flags.DEFINE_string("replay_address", None, "host:port of the replay server (default: the "
                      "address it wrote into DIR/roles/).")
  flags.mark_flag_as_required("task")
  shell.run(functools.partial(_collect_main, stop=stop), prog="trainer.collect",
            exit_at_once=True)


def learn_entry(stop: StopRequest) -> None:
  flags.DEFINE_string("replay_address", None, "host:port of the replay server (default: the "
                      "address it wrote into DIR/roles/).")
  flags.DEFINE_bool("allow_config_change", False,
                    "Resume even though the config changes the experiment.")
  shell.run(functools.partial(_learn_main, stop=stop), prog="trainer.learn",
            exit_at_once=True)
