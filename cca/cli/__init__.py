"""The ``cca`` command: what the workflow's rules call, and what a user can run by hand.

One module per rule file of the workflow (``workflow/rules/<stage>.smk`` -> ``cca/cli/<stage>.py``). Each
module declares its subcommands in ``register(subparsers)``; each subcommand's handler takes the parsed
arguments and nothing else, reads its stage's settings object from ``--settings`` (JSON written by the
rule from the same class), reads its inputs, calls the stage's functions in ``cca/<stage>/`` and writes
its outputs atomically. A user error ends as one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from cca.cli import (browser, config, dcm, evaluation, export, generation, instances, localization, lora, models,
                     table, update)
from cca.errors import CCAError

MODULES = (models, instances, generation, localization, dcm, update, lora, evaluation, table, browser, config, export)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cca", description="Constructive Circuit Amplification workflow commands")
    sub = p.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CCAError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except PermissionError as e:
        print(f"error: cannot write {e.filename}: permission denied; choose a writable results directory",
              file=sys.stderr)
        sys.exit(2)
