"""The ``promptless`` command. Each sub-command lives in its own module here and
exposes ``register(subparsers)``; the module is imported only when the command
line is parsed, so ``import promptless`` never pays for it."""

from __future__ import annotations

import argparse
import importlib
import sys

_COMMANDS = ("models", "demo", "eval", "optimize", "label", "cache", "doctor")


def build_parser() -> argparse.ArgumentParser:
    from promptless._version import __version__

    parser = argparse.ArgumentParser(prog="promptless", description="Programming, not prompting, language models.")
    parser.add_argument("--version", action="version", version=f"promptless {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            mod = importlib.import_module(f"promptless.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command module not present in this build
            if exc.name == f"promptless.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from promptless.errors import PromptlessError

    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away (`promptless models list | head`) shows up here
        return code
    except BrokenPipeError:
        _drop_stdout()
        return 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left
    except PromptlessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not hit the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
