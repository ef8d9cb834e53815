"""`python -m trainer.status` (the command itself: trainer/cli/status.py)."""

if __name__ == "__main__":
  from trainer.cli import status

  status.entry()
