"""The Rust core's layers depend only downwards (docs/architecture.md, "Layers").

Every ``crate::NAME`` a module of ``src/`` mentions must name a module of a lower layer (or
its own). An upward arrow means a type is in the wrong place: move it down instead.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent.parent / "src"

#: Top to bottom, as docs/architecture.md draws them; a module may use those after it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("asgi", "wsgi"),
    ("interface",),
    ("py",),
    ("http",),
    ("ws",),
    ("transport",),
    ("bridge",),
    # The ground, itself in order: each uses only those after it.
    ("config",),
    ("options",),
    ("watched_io", "log_format", "trusted"),
    ("metrics",),
    ("shared_cells", "error"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MENTION = re.compile(r"\bcrate::(\w+)")


def _top_module(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".rs")


def _arrows() -> set[tuple[str, str, str]]:
    """(from module, to module, file) for every mention of another top-level module."""
    found = set()
    for path in SRC.rglob("*.rs"):
        here = _top_module(path)
        if here == "lib":
            continue
        for target in MENTION.findall(path.read_text()):
            if target != here:
                found.add((here, target, str(path.relative_to(SRC))))
    return found


def test_every_module_of_src_has_a_layer():
    modules = {_top_module(p) for p in SRC.glob("*")} - {"lib"}
    assert modules == set(RANK), "a new top-level module needs a place in LAYERS and the docs"


def test_layers_depend_only_downwards():
    upward = sorted(
        f"{file}: {here} -> {target}"
        for here, target, file in _arrows()
        if RANK.get(target, -1) <= RANK[here]
    )
    assert not upward, "upward (or unknown) arrows:\n" + "\n".join(upward)


@pytest.mark.parametrize(("here", "target"), [("transport", "http"), ("ws", "http")])
def test_the_check_sees_an_upward_arrow(here, target, tmp_path, monkeypatch):
    # The check itself can fail: a copy of src/ with one upward mention added is caught.
    copy = tmp_path / "src"
    for path in SRC.rglob("*.rs"):
        dest = copy / path.relative_to(SRC)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(path.read_text())
    (copy / here / "mod.rs").write_text(
        (copy / here / "mod.rs").read_text() + f"\nuse crate::{target}::Nothing;\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", copy)
    with pytest.raises(AssertionError, match=f"{here} -> {target}"):
        test_layers_depend_only_downwards()
