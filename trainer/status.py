"""`python -m trainer.status` (the command itself: trainer/cli/status.py)."""

if __name__ == "__main__":
  from absl import app

  from trainer.cli import args, status

  # status.entry() with the shared command line: a refused flag is one line, exit 2.
  app.run(status.main, flags_parser=args.flags_parser("trainer.status", status.__name__))
