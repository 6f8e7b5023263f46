"""The configuration blocks of docs/deploy.md, as the tests use them: each is the fenced
block after a ``<!-- recipe: NAME -->`` comment."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def recipe(name: str) -> str:
    """The text of recipe ``name``, exactly as docs/deploy.md prints it."""
    text = DEPLOY.read_text()
    m = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```[^\n]*\n(.*?)^```$", text, re.S | re.M)
    assert m, f"docs/deploy.md has no recipe {name!r}"
    return m.group(1)


def substitute(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; every key must occur, so that a recipe
    edited under the test's feet fails it instead of running with the documented values."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the recipe"
        text = text.replace(old, new)
    return text


def juggler_args(command: str) -> list[str]:
    """The arguments of a documented ``juggler ...`` command line (without ``juggler``)."""
    words = command.split()
    assert words[0] == "juggler", command
    return words[1:]
