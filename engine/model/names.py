"""Run names: rendered from a template or a callable, or a readable random ``adjective-noun``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from millstream._engine.model.ids import rng


def render_run_name(
    template: str | Callable[[], str] | None, parameters: Mapping[str, Any]
) -> str | None:
    """A run name from a template string over the parameters, or from a callable."""
    if template is None:
        return None
    if callable(template):
        name = template()
        if not isinstance(name, str):
            raise TypeError(
                f"Callable {template!r} for a run name must return a string, got {name!r}"
            )
        return name
    try:
        return template.format(**parameters)
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"Run name template {template!r} refers to {exc} which is not a parameter "
            f"(parameters: {sorted(parameters)})"
        ) from None


_ADJECTIVES = tuple(
    (
        "amber brisk calm daring eager fancy gentle hasty icy jolly keen lively mellow "
        "nimble olive proud quiet rapid steady tidy upbeat vivid witty young zesty bold "
        "clever dapper earnest fuzzy"
    ).split()
)
_NOUNS = tuple(
    (
        "otter heron badger falcon marmot lynx salmon beaver crane wren newt ibis gecko "
        "moose panda quokka raven stoat tapir vole walrus yak zebu alpaca bison coyote "
        "dingo egret ferret gibbon"
    ).split()
)


def random_run_name() -> str:
    """A readable random flow run name like ``brisk-otter``."""
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
