"""`python -m trainer.export` (the command itself: trainer/cli/export.py)."""

if __name__ == "__main__":
  from trainer.cli import export

  export.entry()
