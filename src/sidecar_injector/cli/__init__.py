"""The `sidecar-injector` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (``func(args) -> int``) as the parser default. This module only
dispatches, and turns the project's own errors into one clear line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sidecar_injector import __version__
from sidecar_injector.core.errors import InjectorError

# Subcommand modules, in the order `--help` lists them.
_SUBCOMMANDS = ("offline", "serve", "certs", "manifests", "policy", "status", "rollout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar-injector",
        description="Inject sidecars declared in SidecarConfig documents into Kubernetes pods.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"sidecar_injector.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"sidecar_injector.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except InjectorError as e:
        print(f"sidecar-injector: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if not missing or missing == "sidecar_injector":
            raise
        # A dependency left out of this environment (an install with --no-deps, a trimmed image):
        # one line, not a traceback.
        print(f"sidecar-injector: error: {args.command} needs the Python package '{missing}', which is not "
              f"installed here: reinstall with `pip install sidecar-injector` (with its dependencies)",
              file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return rc
