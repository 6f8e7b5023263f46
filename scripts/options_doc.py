"""Writes the README's option tables from the declarations in python/juggler/config.py.

    python scripts/options_doc.py [README.md]          rewrite the tables in place
    python scripts/options_doc.py --check [README.md]  exit 1 if they differ (make check-docs)

Each table sits between ``<!-- options:SECTION begin -->`` and ``<!-- options:SECTION end -->``
markers; the text around them is the README's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from juggler.config import OPTIONS, Option

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("general", "protocols")
HEAD = "| option | default | meaning |\n|---|---|---|\n"
#: Rows that are no option of config.py: the positional APP, and --version.
FIRST = {
    "general": "| `APP` | | `module:attribute`, attribute may be dotted (`pkg.mod:obj.app`) |\n"
}
LAST = {"general": "| `--version` | | print the version and exit |\n"}


def _flag(option: Option) -> str:
    if option.kind == "bool":
        return f"`{option.flag} / --no-{option.flag[2:]}`"
    if option.kind != "flag" and option.metavar:
        return f"`{option.flag} {option.metavar}`"
    return f"`{option.flag}`"


def _default(option: Option) -> str:
    if option.doc_default is not None:
        return option.doc_default
    value = option.default
    if option.kind == "flag":
        return "off"
    if option.kind == "bool":
        return "on" if value else "off"
    if value is None or value == ():
        return ""
    if value == "":
        return '`""`'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _row(option: Option) -> str:
    default = _default(option)
    return (
        f"| {_flag(option)} | {default + ' ' if default else ''}| {option.doc or option.help} |\n"
    )


def table(section: str) -> str:
    rows = "".join(_row(o) for o in OPTIONS if o.section == section)
    return HEAD + FIRST.get(section, "") + rows + LAST.get(section, "")


def update(text: str) -> str:
    """``text`` with every section's table regenerated; ValueError when a marker is missing."""
    for section in SECTIONS:
        begin, end = f"<!-- options:{section} begin -->\n", f"<!-- options:{section} end -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"no {begin.strip()} ... {end} markers")
        text = text[: start + len(begin)] + table(section) + text[stop:]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check, change nothing")
    parser.add_argument("readme", nargs="?", type=Path, default=README)
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    try:
        wanted = update(current)
    except ValueError as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 1
    if wanted == current:
        return 0
    if args.check:
        print(
            f"{args.readme}: the option tables differ from python/juggler/config.py;"
            " run `make docs` to regenerate them",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
