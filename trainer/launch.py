r"""Runs a job as roles on this machine: a replay server, the learner and N collectors.

  python -m trainer.launch --root_dir=DIR --gin_file=configs/dqn_cartpole.gin --collectors=4

See trainer/roles/launch.py. It never loads TensorFlow: the roles do.
"""

if __name__ == "__main__":
  from trainer.cli import launch

  launch.entry()
