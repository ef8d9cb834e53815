"""The README and docs hold: the commands they show run as written (each `python -m trainer.X`
names a command that exists, and every flag it passes is one that command defines, read from
the command's own `--helpfull`, so flags a role defines at start-up count); their relative links
resolve; the README links every guide."""

import concurrent.futures
import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import REPO, cli_env

_FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`]+)`")
_COMMAND = re.compile(r"python -m (trainer[\w.]*)([^#\n]*)")
_FLAG = re.compile(r"(?<![\w-])--(\w+)")
_HELP_FLAG = re.compile(r"^\s+(?:-\S+,)?--(\[no\])?(\w+):", re.MULTILINE)
_DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def commands(markdown: str) -> list[tuple[str, list[str]]]:
  """Every `python -m trainer.X ...` in the code of a Markdown text (fenced blocks,
  with `\\` continuations joined, and inline spans): (module, flags it passes)."""
  code = [block.replace("\\\n", " ") for block in _FENCED.findall(markdown)]
  code += [span.replace("\n", " ") for span in _INLINE.findall(_FENCED.sub("", markdown))]
  return [(module, _FLAG.findall(args)) for text in code
          for module, args in _COMMAND.findall(text)]


def defined_flags(module: str) -> set[str] | None:
  """The flags `python -m MODULE` accepts (`--noX` for a bool X), or None if it is
  not a command."""
  if importlib.util.find_spec(module) is None:
    return None
  out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=120)
  found = _HELP_FLAG.findall(out.stdout + out.stderr)
  if "helpfull" not in {name for _, name in found}:
    return None
  return {name for _, name in found} | {f"no{name}" for bool_, name in found if bool_}


def problems(markdown: str, flags_of: Callable[[str], set[str] | None]) -> list[str]:
  """One line per command that names a module or flag that does not exist."""
  found = commands(markdown)
  modules = sorted({module for module, _ in found})
  with concurrent.futures.ThreadPoolExecutor(len(modules) or 1) as pool:
    known = dict(zip(modules, pool.map(flags_of, modules), strict=True))
  out = []
  for module, used in found:
    if known[module] is None:
      out.append(f"python -m {module}: no such command")
      continue
    out += [f"python -m {module}: no flag --{flag}" for flag in used if flag not in known[module]]
  return out


def test_every_documented_command_names_a_command_and_flags_that_exist():
  text = "\n".join(path.read_text() for path in _DOCUMENTS)
  found = {module for module, _ in commands(text)}
  assert {"trainer.train", "trainer.status", "trainer.launch", "trainer.collect"} <= found, found
  assert problems(text, defined_flags) == []


def test_a_command_with_a_flag_or_module_that_does_not_exist_is_caught():
  markdown = ("```sh\npython -m trainer.status --root_dir=DIR \\\n  --jsn\n"
              "python -m trainer.stats --root_dir=DIR\n```\n"
              "Inline: `python -m trainer.status --root_dir=DIR --nojson --color`.\n")
  assert problems(markdown, defined_flags) == [
      "python -m trainer.status: no flag --jsn", "python -m trainer.stats: no such command",
      "python -m trainer.status: no flag --color"]


@pytest.mark.fast
def test_the_readme_activates_the_venv_before_its_first_python_command():
  """`make install` / `make train` put everything into .venv: the documented
  `python -m ...` commands need it active."""
  text = (REPO / "README.md").read_text()
  activate = text.find("source .venv/bin/activate")
  assert activate != -1, "the README must say to run `source .venv/bin/activate`"
  first_python = min(text.find(word) for word in ("python -m ", "python scripts/")
                     if word in text)
  assert activate < first_python, "the README uses python before it activates .venv"


_LINK = re.compile(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)")
_HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)


def _anchors(markdown: str) -> set[str]:
  """The anchors GitHub gives a page's headings: lower case, punctuation dropped, '-' for ' '."""
  return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
          for title in _HEADING.findall(_FENCED.sub("", markdown))}


@pytest.mark.fast
def test_every_relative_link_of_the_readme_and_docs_resolves():
  broken = []
  for document in _DOCUMENTS:
    text = document.read_text()
    for path, anchor in _LINK.findall(text):
      if path.startswith(("http://", "https://")):
        continue
      target = document.parent / path if path else document
      if not target.exists():
        broken.append(f"{document.name}: {path}")
      elif anchor and target.suffix == ".md" and anchor not in _anchors(target.read_text()):
        broken.append(f"{document.name}: {path}#{anchor}")
  assert broken == []


@pytest.mark.fast
def test_the_readme_links_every_guide():
  readme = (REPO / "README.md").read_text()
  linked = {path for path, _ in _LINK.findall(readme)}
  assert [f"docs/{p.name}" for p in _DOCUMENTS[1:] if f"docs/{p.name}" not in linked] == []
