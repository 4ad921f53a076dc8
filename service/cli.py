"""The `vidpose` command.

Subcommands are registered by small `commands` modules, one per package, so
each package owns its own CLI surface. Registration must stay import-light:
handlers import torch (or the web stack) only when they run, which keeps
`vidpose --help` fast and keeps torch out of the API process.
"""

from __future__ import annotations

import argparse
import os
import sys

from service import __version__

# Modules exposing `register(subparsers)`; each adds its subcommands with
# `set_defaults(func=handler)` where handler(args) -> int exit code.
_REGISTRARS = ("service.api.commands", "service.worker.commands", "training.commands", "model.commands",
              "service.render.commands")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="vidpose",
        description="Video human-pose estimation: serve, estimate, train, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"vidpose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _REGISTRARS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vidpose model-info F | head`: the reader left; stop quietly like cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
