"""The commands' help (gateway/cli/help.py): an example under every command, each example a
command line the parser accepts, a command group without its action prints that group's help
(exit 2), and colour only on a terminal without NO_COLOR."""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import gateway_cli, peer_cli
from gateway.cli.common import glue_id_options
from gateway.cli.help import EXAMPLES, Parser, colour_on, paint, walk

BIN = Path(sys.executable).parent
SAMPLE_ID = "-" + "A" * 42  # an id may start with '-': the examples put ids after `--`
TIMEOUT_S = 60


def parsers() -> dict[str, Parser]:
    return {p.prog: p for m in (gateway_cli, peer_cli) for p in walk(m.parser())}


def example_argv(example: str) -> list[str]:
    words = shlex.split(example.replace("$GW", SAMPLE_ID))
    if words[0].startswith("GW=$("):  # GW=$(streembit-gateway init ...)
        words[0] = words[0].removeprefix("GW=$(")
        words[-1] = words[-1].removesuffix(")")
    if words[:3] == ["sudo", "-u", "streembit"]:
        words = words[3:]
    return words


def test_every_command_has_an_example_and_every_example_parses() -> None:
    found = parsers()
    assert set(EXAMPLES) == set(found)  # none missing, none stale
    tops = {
        "streembit-gateway": found["streembit-gateway"],
        "streembit-peer": found["streembit-peer"],
    }
    for prog, examples in EXAMPLES.items():
        node = found[prog]
        assert node.epilog and node.epilog.startswith("example")
        funcs = [p.get_default("func") for p in walk(node) if not p.commands]
        for example in examples:
            argv = example_argv(example)
            assert argv[0] in tops and prog.startswith(argv[0]), example
            if "--help" in argv:
                continue
            args = tops[argv[0]].parse_args(
                glue_id_options(argv[1:], ("--gateway", "--subject", "--to"))
            )
            assert args.func in funcs, (prog, example)  # a command of PROG, not a group's help


@pytest.mark.parametrize(
    ("argv", "usage", "lists"),
    [
        (["streembit-gateway", "acl"], "usage: streembit-gateway acl [-h] ACTION", "apply"),
        (["streembit-gateway", "companion"], "usage: streembit-gateway companion", "flash"),
        (["streembit-peer", "acl"], "usage: streembit-peer acl [-h] ACTION", "grant"),
    ],
)
def test_a_group_without_its_action_prints_its_own_help(
    argv: list[str], usage: str, lists: str
) -> None:
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith(usage), proc.stdout
    assert f"    {lists} " in proc.stdout and "example:" in proc.stdout
    assert "COMMAND" not in proc.stdout  # not the top-level help


def test_no_command_prints_the_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_cli.main([]) == 2
    assert capsys.readouterr().out.startswith("usage: streembit-gateway [-h]")


@pytest.mark.parametrize(
    ("main", "argv", "shown"),
    [
        (gateway_cli.main, ["acl", "apply", "--help"],
         "streembit-gateway acl apply --state /var/lib/streembit-gateway acl.jws"),
        (gateway_cli.main, ["doctor", "--help"], "examples:\n  sudo -u streembit"),
        (peer_cli.main, ["acl", "grant", "--help"],
         '--ops readproperty,invokeaction --schedule "mon-fri 07:00-19:00"'),
        (peer_cli.main, ["--help"], "streembit-peer keygen --key owner.key"),
    ],
)  # fmt: skip
def test_help_shows_the_examples(
    main: object, argv: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(main)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert shown in text, text
    for line in text.splitlines():  # descriptions and examples fit an 80-column terminal
        assert len(line) <= 80 or line.startswith(" " * 20) or "usage:" in line, line


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert colour_on(Tty(), {"TERM": "xterm"})
    assert not colour_on(Tty(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert colour_on(Tty(), {"TERM": "xterm", "NO_COLOR": ""})  # no-color.org: empty is unset
    assert not colour_on(Tty(), {"TERM": "dumb"})
    assert not colour_on(io.StringIO(), {"TERM": "xterm"})
    assert (
        paint("FAIL", "red", True) == "\033[31mFAIL\033[0m"
        and paint("FAIL", "red", False) == "FAIL"
    )


def test_doctor_output_to_a_pipe_has_no_colour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_cli.main(["init", "--state", str(tmp_path / "gw")])
    capsys.readouterr()
    gateway_cli.main(["doctor", "--state", str(tmp_path / "gw")])
    text = capsys.readouterr().out
    assert "[ok  ] gateway key" in text and "\033" not in text
