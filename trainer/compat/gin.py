"""gin-config's private and undocumented pieces that the trainer uses (checked
against `PINNED["gin"]`). Light: imports gin alone (no TensorFlow)."""

import inspect
from collections.abc import Callable, Iterator

import gin
from gin import config_parser

from trainer.compat import reach


def registered_selectors() -> list[str]:
  """The full selectors (`module.name`) of every registered configurable.

  Reaches into `gin.config._REGISTRY` (a `SelectorMap`) and its `items()`: gin
  offers no public listing. Needed for the "did you mean" hint of a misspelt
  configurable (`trainer.config.gin_config`). gin-config 0.5.0.
  """
  registry = reach("gin", gin.config, "_REGISTRY", "gin.config._REGISTRY")
  return [selector for selector, _ in registry.items()]


def registered_function(selector: str) -> Callable | None:
  """The function or class registered under `selector` (a partial selector
  is matched as in a binding), undecorated; None if none matches.

  Reaches into `gin.config._REGISTRY.get_match(selector)` and the `Configurable`
  record's `wrapped`. Raises KeyError for a selector that matches several.
  Needed for the "did you mean" hint of a misspelt parameter
  (`trainer.config.gin_config`). gin-config 0.5.0.
  """
  registry = reach("gin", gin.config, "_REGISTRY", "gin.config._REGISTRY")
  configurable = registry.get_match(selector)
  return configurable.wrapped if configurable is not None else None


def binding_statements(config_text: str) -> Iterator[config_parser.BindingStatement]:
  """The bindings of a gin config's text, parsed without being applied: each
  with `scope`, `selector`, `arg_name` (empty for a macro) and `value` (a
  literal, or a reference with `selector` and `evaluate`, registered or not);
  imports and includes are skipped. Parses as it is iterated, so gin's errors
  (SyntaxError and others) come from the iteration.

  Reaches into `gin.config_parser.ConfigParser`, its `BindingStatement` and
  `gin.config.ParserDelegate(skip_unknown=True)`: undocumented (gin's public
  API only parses into the global config, which needs every configurable
  imported). Needed to read a run's saved config and validate literal values
  before anything is imported (`trainer.config.gin_config`, the CLI's hints).
  gin-config 0.5.0.
  """
  parser = config_parser.ConfigParser(config_text, gin.config.ParserDelegate(skip_unknown=True))
  for statement in parser:
    if isinstance(statement, config_parser.BindingStatement):
      yield statement


def set_signature(fn: Callable, signature: inspect.Signature) -> None:
  """Makes gin check bindings of `fn` (before `gin.configurable(fn)`) against
  `signature`, e.g. a `**kwargs` function's keyword-only parameters: a binding
  of any other parameter is then an error as the config is parsed.

  Relies on gin reading parameters with `inspect.getfullargspec`, which honours
  a function's `__signature__` (gin's `_might_have_parameter`: a `**kwargs` in
  the real signature would accept any name). Needed by the job's knobs
  (`trainer.loops.spec.configure_job`, `trainer.config.settings.with_knobs`).
  gin-config 0.5.0.
  """
  fn.__signature__ = signature
