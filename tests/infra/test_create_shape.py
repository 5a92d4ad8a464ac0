"""Every ``create_*`` in infra/ has the one argument shape ``infra/__init__.py`` describes:
``(prefix, cfg, *, resource_group_name, deps..., tags)``, with ``cfg`` and ``tags`` left out by
a function that reads no config or declares no taggable resource."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import infra


def _create_functions() -> list[tuple[str, Callable[..., Any]]]:
    found: list[tuple[str, Callable[..., Any]]] = []
    for module_info in pkgutil.iter_modules(infra.__path__):
        if module_info.name == "__main__":
            continue
        module = importlib.import_module(f"infra.{module_info.name}")
        for name, value in vars(module).items():
            if (
                name.startswith("create_")
                and inspect.isfunction(value)
                and value.__module__ == module.__name__
            ):
                found.append((f"{module.__name__}.{name}", value))
    return found


def test_there_are_create_functions_to_check() -> None:
    assert len(_create_functions()) >= 10


def test_every_create_function_has_the_one_shape() -> None:
    wrong: list[str] = []
    for qualified, function in _create_functions():
        params = list(inspect.signature(function).parameters.values())
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        if positional not in (["prefix"], ["prefix", "cfg"]):
            wrong.append(f"{qualified}: positional {positional}, want prefix[, cfg]")
        if keyword and keyword[0] != "resource_group_name" and "resource_group_name" in keyword:
            wrong.append(f"{qualified}: resource_group_name must come first after '*'")
        if "tags" in keyword and keyword[-1] != "tags":
            wrong.append(f"{qualified}: tags must come last")
        if len(params) != len(positional) + len(keyword):
            wrong.append(f"{qualified}: no *args or **kwargs")
    assert not wrong, "\n".join(wrong)
