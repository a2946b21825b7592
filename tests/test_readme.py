"""README.md tells the truth: its option tables are every command's options with their defaults (as
click, the command line's parser, defines them and ``--help`` prints them), its synopsis shows real
defaults, its default-recipe block is the file, and its ten-line own-model example runs as written."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import click
import numpy as np
import pytest

from flow.cli import cli, main
from flow.explore.recipe import default_recipe_path
from flow.report.schema import Report

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEADER = "| option | default | meaning |"


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells (``\\|`` is a pipe inside a cell)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def readme_tables(text: str = README) -> dict[str, list[list[str]]]:
    """``{"qflow build": rows, ...}``: the table after each "Options of `qflow ...`" line."""
    tables: dict[str, list[list[str]]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"Options of `(qflow(?: [\w-]+)?)`", line)
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j + 1 < len(lines) and lines[j].strip() == HEADER and lines[j + 1].startswith("|---"):
            k = j + 2
            rows = []
            while k < len(lines) and lines[k].startswith("|"):
                rows.append(_cells(lines[k]))
                k += 1
            assert m.group(1) not in tables, f"two option tables for {m.group(1)}"
            tables[m.group(1)] = rows
        else:
            tables.setdefault(m.group(1), [])  # "Options of `qflow targets`: none but ..."
    return tables


def row_names(cell: str) -> set[str]:
    """The option names (``--target``, ``-t``) or the argument name (``MODEL``) in a table's first cell."""
    arg = re.fullmatch(r"`([A-Z][A-Z_]*)`", cell)
    if arg:
        return {arg.group(1)}
    return set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell))


def documented_default(p: click.Parameter) -> str | None:
    """What a README default cell must say: the default ``--help`` shows, ``off`` for a flag, ``required``,
    or the bracketed default the option's help states; None for an optional argument (no help text in click)."""
    if isinstance(p, click.Argument):
        return "required" if p.required else None
    assert isinstance(p, click.Option)
    if p.required:
        return "required"
    if p.is_flag:
        return "off"
    if p.show_default and p.default is not None:
        d = p.default
        return ",".join(map(str, d)) if isinstance(d, (tuple, list)) else str(d)
    stated = re.findall(r"\[([^\[\]]+)\]", p.help or "")
    assert stated, f"{p.opts[0]}: its --help states no default (show_default or a [bracketed] default)"
    return stated[-1]


def _commands() -> dict[str, click.Command]:
    return {"qflow": cli, **{f"qflow {name}": cmd for name, cmd in cli.commands.items()}}


def _params(cmd: click.Command) -> list[click.Parameter]:
    """Its own parameters; ``--debug`` of a subcommand is documented once, in the ``qflow`` table."""
    return [p for p in cmd.params if not (cmd is not cli and p.name == "debug")]


def _names(p: click.Parameter) -> set[str]:
    return {p.human_readable_name} if isinstance(p, click.Argument) else {*p.opts, *p.secondary_opts}


def test_every_command_has_its_option_table():
    assert set(readme_tables()) == set(_commands())


@pytest.mark.parametrize("name", sorted(_commands()))
def test_the_readme_table_is_the_commands_options_with_their_defaults(name):
    cmd = _commands()[name]
    rows = readme_tables()[name]
    by_name = {}
    for row in rows:
        assert len(row) == 3, row
        names = row_names(row[0])
        assert names, f"{name}: no option in {row[0]!r}"
        by_name[frozenset(names)] = row
    params = _params(cmd)
    assert set(by_name) == {frozenset(_names(p)) for p in params}, name
    for p in params:
        row = by_name[frozenset(_names(p))]
        want = documented_default(p)
        if want is not None:
            assert row[1] == want, f"{name} {p.opts if isinstance(p, click.Option) else p.name}: README says {row[1]!r}, --help {want!r}"
        assert row[2], f"{name} {row[0]}: no meaning"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_prints_every_option_and_default_the_readme_lists(name, capsys):
    args = name.split()[1:] + ["--help"]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    for row in readme_tables()[name]:
        for opt in {n for n in row_names(row[0]) if n.startswith("-")}:
            assert opt in out, f"{name}: {opt} not in --help"
        if row[1] not in ("off", "required") and not row[0].startswith("`RECIPE`"):
            assert row[1] in out, f"{name} {row[0]}: default {row[1]!r} not in --help"


def test_every_subcommand_takes_debug_after_its_name():
    for name, cmd in cli.commands.items():
        assert any(p.name == "debug" for p in cmd.params), name


def test_debug_after_the_command_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["build", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    for argv in (["--debug", "build", str(bad), "--out", str(tmp_path / "o")], ["build", str(bad), "--out", str(tmp_path / "o"), "--debug"]):
        with pytest.raises(Exception) as e:
            main(argv)
        assert "bad.onnx" in str(e.value)
    assert main(["build", str(bad), "--out", str(tmp_path / "o")]) == 2  # --debug does not stick to the next call


def test_the_synopsis_shows_real_defaults():
    block = re.search(r"## Command line\n\n```text\n(.*?)```", README, re.S).group(1)
    commands = _commands()
    checked = 0
    for line in block.splitlines():
        words = line.split()
        cmd = commands[" ".join(words[:2])] if " ".join(words[:2]) in commands else cli
        for opt, value in re.findall(r"\[(--[\w-]+) ([^\]\s]+)\]", line):
            if re.fullmatch(r"[A-Z][A-Z_]*|\.\.\.", value):
                continue  # a placeholder: DIR, NAME, URL
            p = next(p for p in cmd.params if opt in getattr(p, "opts", ()))
            want = documented_default(p)
            assert value == want or (p.multiple and value in want.split(",")), f"{line.strip()}: {opt} {value} but the default is {want}"
            checked += 1
    assert checked >= 5


def test_the_default_recipe_block_is_the_file():
    section = README[README.index("## Recipes"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    assert block == default_recipe_path().read_text(encoding="utf-8")


def _byom_blocks() -> tuple[str, str]:
    section = README[README.index("### In ten lines"):README.index("### What it accepts")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip()
    return code, command


def test_bring_your_own_model_in_ten_lines_runs_as_written(tmp_path, monkeypatch, capsys):
    code, command = _byom_blocks()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    assert "export_qonnx" in code and "--verify-inputs" in command and "--reference-outputs" in command
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snippet.py").write_text(code)
    runpy.run_path(str(tmp_path / "snippet.py"), run_name="__main__")
    argv = shlex.split(command)
    assert argv[0] == "qflow"
    assert main(argv[1:]) == 0, capsys.readouterr().err
    report = Report.load(tmp_path / "byom" / "report.json")
    stages = {s.name: s for s in report.verification.stages}
    assert report.verification.passed and stages["qonnx"].reference == "pytorch"
    assert stages["qonnx"].samples == len(np.load(tmp_path / "x.npy")) == 200
    assert stages["specialized"].bit_exact
