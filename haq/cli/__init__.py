"""The ``haq`` command: a thin layer over the Python API.

One module per command (``register(subparsers)`` + ``run(args)``); adding a command is one
file plus one entry in `COMMANDS`. Every user-input problem surfaces as
``haq: error: <problem and fix>`` on one line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from haq.cli.args import Parser
from haq.errors import HaqError, RandomWeightsWarning

COMMANDS = (
    "models",
    "layers",
    "eval",
    "export",
    "bench",
    "space",
    "search",
    "sensitivity",
    "targets",
    "cost",
    "fit_cost_model",
    "profile",
    "report",
    "dashboard",
    "finetune",
    "measure",
)


def build_parser() -> argparse.ArgumentParser:
    from haq import __version__

    parser = Parser(prog="haq", description="Hardware-aware mixed-precision quantization search.")
    parser.add_argument("--version", action="version", version=f"haq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"haq.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from haq import progress, signals

    args = build_parser().parse_args(argv)
    progress.configure("auto")  # each command starts plain; `haq search -q / --log-json` change it
    func: Callable[[argparse.Namespace], int] = args.func
    signals.install()
    try:
        with warnings.catch_warnings():
            # haq.models.weights already said it in one line; the warnings module would say
            # it again with a source line
            warnings.simplefilter("ignore", RandomWeightsWarning)
            return func(args)
    except HaqError as e:
        print(f"haq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"haq: {signals.describe(e)}", file=sys.stderr)
        return signals.exit_code(e)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
