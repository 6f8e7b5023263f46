"""The ``juggler`` command line, built from the option declarations in ``config.py``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from . import __version__
from .config import OPTIONS, Config, ConfigError
from .exit_codes import EXIT_BAD_OPTION
from .supervisor import run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One readable line and exit code 2, without the usage block.
        self.exit(EXIT_BAD_OPTION, f"juggler: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="juggler",
        description="Serve an ASGI or WSGI application with juggler's Rust core.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "app", nargs="?", metavar="APP", help="The app to serve, as module:attribute."
    )
    parser.add_argument("--version", action="version", version=f"juggler {__version__}")
    for option in OPTIONS:
        default = f" [default: {option.default}]" if option.default not in (None, (), "") else ""
        env = f" [env: {option.env}]"
        # argparse formats help with %: a literal one (a log format's atoms) is doubled.
        option = dataclasses.replace(option, help=option.help.replace("%", "%%"))
        if option.kind == "bool":
            parser.add_argument(
                option.flag, action=argparse.BooleanOptionalAction, help=option.help + default + env
            )
        elif option.kind == "flag":
            parser.add_argument(option.flag, action="store_true", help=option.help + env)
        elif option.kind == "multi":
            parser.add_argument(
                option.flag, action="append", metavar=option.metavar, help=option.help + env
            )
        else:
            parser.add_argument(
                option.flag,
                metavar=option.metavar or option.name.upper(),
                help=option.help + default + env,
            )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    app = args.pop("app", None)
    try:
        config = Config.resolve(app, args)
    except ConfigError as exc:
        # Logging is not configured yet (--log-level is one of the options being read).
        print(f"juggler: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_OPTION)
    sys.exit(run(config))


if __name__ == "__main__":
    main()
