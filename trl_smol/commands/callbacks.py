"""`trl-smol callbacks`: the callbacks that recipes can name, from every installed package."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..callbacks import ENTRY_POINT_GROUP, registered_callbacks


def configure_parser(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    table = Table(title=f"Callbacks in the `{ENTRY_POINT_GROUP}` entry-point group")
    table.add_column("name", style="bold")
    table.add_column("object")
    table.add_column("package")
    for name, entry_point in sorted(registered_callbacks().items()):
        table.add_row(name, entry_point.value, entry_point.dist.name if entry_point.dist else "?")
    Console().print(table)
    return 0
