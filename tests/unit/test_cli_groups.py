"""The `avsev` command is assembled from its groups: each module of `avsev_tools.commands` declares
its own commands (names, arguments, the function that runs them), and `avsev_tools.cli` only puts
them together and runs one."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest
from avsev_tools import cli, commands

COMMANDS = [
    "train",
    "build",
    "evaluate",
    "compare",
    "drift",
    "ab-report",
    "rollout",
    "registry",
    "lifecycle",
    "score",
    "demo",
    "verify",
    "cost",
    "records",
    "local",
]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of `parser`'s subcommands, by name (none for a leaf)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse offers no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            found |= action.choices
    return found


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, object]:
    """`{"local up": fn, ...}`: every runnable command under `parser` and its function."""
    children = _subcommands(parser)
    if not children:
        return {" ".join(path): parser.get_default("fn")}
    out: dict[str, object] = {}
    for name, child in children.items():
        out |= _leaves(child, (*path, name))
    return out


def _group_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    return [importlib.import_module(f"avsev_tools.commands.{name}") for name in sorted(names)]


def test_help_lists_every_group_in_order(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    assert list(_subcommands(cli.build_parser())) == COMMANDS
    positions = [listed.index(f"\n    {name} ") for name in COMMANDS]
    assert positions == sorted(positions)


def test_every_module_of_the_package_is_a_group_of_the_command():
    assert {m.__name__ for m in _group_modules()} == {g.__name__ for g in cli.GROUPS}


@pytest.mark.parametrize("group", cli.GROUPS, ids=lambda g: g.__name__.rsplit(".", 1)[-1])
def test_each_group_declares_its_own_commands_and_runs_them(group):
    parser = argparse.ArgumentParser(prog="avsev")
    group.register(parser.add_subparsers(dest="command", required=True))
    leaves = _leaves(parser)
    assert leaves, f"{group.__name__} declares no command"
    for command, fn in leaves.items():
        assert callable(fn), f"avsev {command}: no function to run"
        assert fn.__module__ == group.__name__, f"avsev {command} runs {fn.__module__}"


def test_the_groups_together_are_the_whole_command():
    whole = _leaves(cli.build_parser())
    parts: dict[str, object] = {}
    for group in cli.GROUPS:
        parser = argparse.ArgumentParser(prog="avsev")
        group.register(parser.add_subparsers(dest="command", required=True))
        mine = _leaves(parser)
        assert not set(mine) & set(parts), f"{group.__name__} declares a command twice"
        parts |= mine
    assert parts == whole
    assert {"local up", "local deploy", "local tick", "records redrive"} <= set(whole)


def test_cli_only_assembles_the_groups():
    source = Path(cli.__file__).read_text()
    assert len(source.splitlines()) <= 150
    assert "def cmd_" not in source and "add_argument" not in source
