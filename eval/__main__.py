"""``python -m eval <command> [args...]``: dispatch to the command's ``main(argv) -> int``."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# command -> "module:function"; modules are imported only when their command runs.
COMMANDS: dict[str, str] = {
    "score": "eval.score:main",
    "synth": "eval.synth:main",
    "speed": "eval.speed:main",
}


def usage() -> str:
    names = "\n".join(f"  {name}" for name in COMMANDS)
    return (
        "usage: python -m eval <command> [args...]\n\ncommands:\n"
        f"{names}\n\n'python -m eval <command> --help' shows a command's options."
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[command].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"command {command!r} is not available: module {module_name} is not installed", file=sys.stderr)
        return 2
    func = getattr(module, func_name, None)
    if func is None:
        print(f"command {command!r} is not available: {module_name} has no {func_name}()", file=sys.stderr)
        return 2
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
