"""The argument parser of both commands: each command's help ends with an example, and a command
group given without its action (`streembit-gateway acl`) prints that group's help. Also the one
rule for colour (`colour_on`): only on a terminal, never with NO_COLOR set.

Every parser made under `Parser` is a `Parser` too (argparse makes subparsers of the parent's
class), so the commands' own modules keep calling `add_parser` as usual. The examples live in
one table, keyed by the command line (`prog`): tests/test_cli_help.py checks that every command
has one and that each example parses.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from collections.abc import Iterator, Mapping
from typing import Any, Final, TextIO

from gateway.codes import EXIT_USAGE

#: Each command, then its examples indented under it (a trailing backslash continues an
#: example on the next line). "$GW" is the gateway id, as in the README.
_TABLE: Final = r"""
streembit-gateway
    streembit-gateway init --state /var/lib/streembit-gateway
    streembit-gateway acl apply --help
streembit-gateway init
    GW=$(streembit-gateway init --state ./demo-state)
streembit-gateway provision
    streembit-gateway provision --state /var/lib/streembit-gateway --owner-key owner.key.pub
    streembit-gateway provision --state /var/lib/streembit-gateway --qr owner-qr.jpg
streembit-gateway qr
    streembit-gateway qr --state /var/lib/streembit-gateway --png gateway-qr.png
streembit-gateway reset
    sudo -u streembit streembit-gateway reset --state /var/lib/streembit-gateway
streembit-gateway acl
    streembit-gateway acl apply --state /var/lib/streembit-gateway acl.jws
streembit-gateway acl apply
    streembit-gateway acl apply --state /var/lib/streembit-gateway acl.jws
streembit-gateway audit
    streembit-gateway audit --state /var/lib/streembit-gateway --limit 20
streembit-gateway demo
    streembit-gateway demo --state ./demo-state --http-port 8080
    streembit-gateway demo --host 0.0.0.0 --advertise 192.168.1.20
streembit-gateway run
    streembit-gateway run --config /etc/streembit-gateway/gateway.toml
streembit-gateway check-config
    streembit-gateway check-config examples/thermostat.toml
streembit-gateway companion
    streembit-gateway companion flash --port /dev/ttyUSB0 --dry-run
streembit-gateway companion broker
    streembit-gateway companion broker --state /var/lib/streembit-gateway \
        --out /etc/mosquitto/streembit --host 192.168.1.20
streembit-gateway companion flash
    streembit-gateway companion flash --port /dev/ttyUSB0 --firmware ESP32_GENERIC.bin
streembit-gateway companion pair
    streembit-gateway companion pair --port /dev/ttyUSB0 --state /var/lib/streembit-gateway \
        --device kitchen --channel relay=relay:5 --broker-host 192.168.1.20
streembit-gateway doctor
    sudo -u streembit streembit-gateway doctor
    streembit-gateway doctor --state ./demo-state
streembit-gateway migrate
    sudo -u streembit streembit-gateway migrate --state /var/lib/streembit-gateway
streembit-peer
    streembit-peer keygen --key owner.key
    streembit-peer acl grant --help
streembit-peer keygen
    streembit-peer keygen --key owner.key
streembit-peer id
    streembit-peer id --key owner.key.pub
streembit-peer token
    streembit-peer token --key alice.key --gateway "$GW" --ttl 600
streembit-peer acl
    streembit-peer acl show --acl acl.jws
streembit-peer acl grant
    streembit-peer acl grant --key owner.key --acl acl.jws --gateway "$GW" \
        --subject alice.key.pub --things front-door --ops readproperty,invokeaction \
        --schedule "mon-fri 07:00-19:00"
    streembit-peer acl grant --key owner.key --acl acl.jws --gateway "$GW" \
        --subject alice.key.pub --things front-door --ops invokeaction --delegate 1
streembit-peer acl revoke
    streembit-peer acl revoke --key owner.key --acl acl.jws --gateway "$GW" \
        --subject alice.key.pub
    streembit-peer acl revoke --key owner.key --acl acl.jws --gateway "$GW" \
        --link cleaner.dlg
streembit-peer acl show
    streembit-peer acl show --acl acl.jws
streembit-peer acl push
    streembit-peer --bootstrap 192.168.1.20:4242 --key owner.key acl push --acl acl.jws -- "$GW"
streembit-peer node
    streembit-peer node --dht-port 4300 --host 192.168.1.30
streembit-peer find
    streembit-peer --bootstrap 192.168.1.20:4242 find -- "$GW"
streembit-peer things
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key things -- "$GW"
streembit-peer td
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key td -- "$GW" front-door
streembit-peer read
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key \
        read -- "$GW" living-room temperature
streembit-peer write
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key \
        write -- "$GW" living-room setpoint 21.5
streembit-peer invoke
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key invoke -- "$GW" front-door unlock
    streembit-peer --bootstrap 192.168.1.20:4242 --key cleaner.key \
        invoke --delegation cleaner.dlg -- "$GW" front-door unlock
streembit-peer observe
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key \
        observe --count 2 -- "$GW" living-room temperature
streembit-peer subscribe
    streembit-peer --bootstrap 192.168.1.20:4242 --key alice.key \
        subscribe --count 1 -- "$GW" front-door unlocked
streembit-peer owner-qr
    streembit-peer owner-qr --key owner.key --png owner-qr.png
streembit-peer claim
    streembit-peer claim --key owner.key --qr gateway-qr.png
streembit-peer transfer
    streembit-peer transfer --key owner.key --to bob.key.pub -- "$GW"
streembit-peer discover
    streembit-peer discover --timeout 3
streembit-peer delegate
    streembit-peer delegate --key alice.key --gateway "$GW" --to cleaner.key.pub \
        --things front-door --ops invokeaction --schedule "tue 09:00-12:00" --uses 4 \
        --exp 2027-03-01T00:00:00Z --out cleaner.dlg
streembit-peer audit
    streembit-peer --bootstrap 192.168.1.20:4242 --key owner.key audit verify -- "$GW"
streembit-peer audit verify
    streembit-peer --bootstrap 192.168.1.20:4242 --key owner.key \
        audit verify --checkpoint last-week.jws --save-checkpoint today.jws -- "$GW"
"""


def _read_table(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    command, joined = "", ""
    for line in text.strip().splitlines():
        if not line[:1].isspace():
            command = line.strip()
            table[command] = []
            continue
        joined += line.strip()
        if joined.endswith("\\"):
            joined = joined[:-1]
            continue
        table[command].append(joined)
        joined = ""
    return {command: tuple(examples) for command, examples in table.items()}


#: command line (`prog`) -> its examples, each on one line
EXAMPLES: Final = _read_table(_TABLE)
WIDTH: Final = 79  # help text is laid out for an 80-column terminal
SGR: Final = {"red": "31", "yellow": "33", "green": "32", "bold": "1"}  # ANSI colour codes


def _shell_lines(example: str) -> list[str]:
    """EXAMPLE as shell lines of at most WIDTH, continued with a backslash (quotes kept)."""
    words: list[str] = []
    for word in shlex.split(example, posix=False):
        if words and words[-1].startswith("--") and " " not in words[-1] and word[0] != "-":
            words[-1] += f" {word}"  # an option stays with its value
        else:
            words.append(word)
    lines = [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) + 5 > WIDTH:
            lines[-1] += " \\"
            lines.append("    ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    return lines


def _filled(text: str) -> str:
    """TEXT's paragraphs filled to WIDTH; a paragraph with indented lines is kept as it is."""
    paras = [p for p in textwrap.dedent(text).strip().split("\n\n") if p.strip()]
    return "\n\n".join(
        p if any(line[:1].isspace() for line in p.splitlines()) else textwrap.fill(p, WIDTH)
        for p in paras
    )


def epilog(prog: str) -> str | None:
    """The examples of command PROG, laid out for the help text; None if it has none."""
    examples = EXAMPLES.get(prog)
    if not examples:
        return None
    lines = [line for example in examples for line in _shell_lines(example)]
    head = "examples:" if len(examples) > 1 else "example:"
    return "\n".join([head, *(f"  {line}" for line in lines)])


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with the example of its command as epilog (RawDescription layout: the
    descriptions and examples keep their lines), whose command groups print their own help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        if self.description:
            self.description = _filled(self.description)
        if self.epilog is None:
            self.epilog = epilog(self.prog)
        self.commands: dict[str, Parser] = {}

    def add_subparsers(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> argparse._SubParsersAction[Parser]:
        """As argparse's; without an action this parser prints its help (exit 2)."""
        action: argparse._SubParsersAction[Parser] = super().add_subparsers(*args, **kwargs)
        self.commands = action.choices
        self.set_defaults(func=self.help_exit)
        return action

    def help_exit(self, args: argparse.Namespace) -> int:
        """The `func` of a command group given without its action."""
        self.print_help(sys.stdout)
        return EXIT_USAGE


def walk(parser: Parser) -> Iterator[Parser]:
    """PARSER and every command under it, depth first."""
    yield parser
    for sub in parser.commands.values():
        yield from walk(sub)


def colour_on(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Colour only for a person at a terminal: STREAM is a TTY, NO_COLOR (https://no-color.org)
    is unset or empty, and TERM is not `dumb`."""
    env = os.environ if env is None else env
    isatty = getattr(stream, "isatty", None)
    return bool(
        callable(isatty) and isatty() and not env.get("NO_COLOR") and env.get("TERM") != "dumb"
    )


def paint(text: str, colour: str, on: bool) -> str:
    """TEXT in COLOUR (red, yellow, green, bold) when ON, else TEXT as it is."""
    return f"\033[{SGR[colour]}m{text}\033[0m" if on else text
