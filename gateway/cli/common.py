"""Shared CLI plumbing: JSON or human output, exit codes, error reporting.

Exit codes (the registry, gateway/codes.py): 0 success; 1 refused or failed at run time; 2 bad
usage, bad config or bad input file. Data goes to stdout (one value a script can capture:
`GW=$(streembit-gateway init ...)`), notes for people to stderr (`note()`). An error is one line
on stderr (`error: MESSAGE [CODE]`), never a traceback, also for a file that cannot be read.

A one-shot command is mostly start-up: `pause_gc` / `settle_gc` keep the cyclic garbage collector
off the objects its imports create (they live as long as the process anyway).
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from gateway.codes import EXIT_FAIL as EXIT_FAIL
from gateway.codes import EXIT_OK as EXIT_OK
from gateway.codes import EXIT_USAGE as EXIT_USAGE
from gateway.codes import Code, render
from gateway.errors import StreembitError

#: OSError numbers of a file named on the command line that is not there to read.
_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})


def out(args: argparse.Namespace, data: Any, human: str | Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, separators=(",", ":"), default=str), flush=True)
    else:
        print(human() if callable(human) else human, flush=True)


def note(args: argparse.Namespace, text: str) -> None:
    """A note for a person (stderr), never mixed with the data a script captures."""
    if not getattr(args, "json", False):
        print(text, file=sys.stderr, flush=True)


def id_arg(text: str) -> str:
    """argparse type of an option that takes an id (a gateway's, a peer's): 43 base64url
    characters, nothing around them. A captured line of human output is refused here."""
    from gateway.identity.keys import is_id  # (the key library: only once an id is given)

    if is_id(text):
        return text
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise argparse.ArgumentTypeError(f"not an id (43 characters of A-Z a-z 0-9 - _): {shown!r}")


def fail(args: argparse.Namespace, exc: StreembitError) -> int:
    """Report EXC (one line on stderr; its JSON body on stdout with --json); its exit code."""
    shown = render(exc)
    if getattr(args, "json", False):
        print(json.dumps(shown.body()), flush=True)
    print(shown.line, file=sys.stderr, flush=True)
    return shown.exit_code


def os_failure(exc: OSError) -> StreembitError:
    """EXC (a file that could not be read or written, or another OS failure) as an error with
    a registered code: `no_file` (exit 2) for a named file that is not there."""
    if exc.filename is None:
        return StreembitError(str(exc) or type(exc).__name__, code=Code.ERROR)
    code = Code.NO_FILE if exc.errno in _MISSING else Code.FILE_ERROR
    return StreembitError(f"{exc.filename}: {exc.strerror or exc}", code=code)


def add_json(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """--json on the top-level parser and on every subcommand (either place works)."""
    p.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print machine-readable JSON",
    )


def setup_logging(level: str, fmt: str | None = None) -> str:
    """The one place logging is set up: LEVEL, and FMT (journal | json | text | auto; default
    $STREEMBIT_LOG_FORMAT, else auto: the journal when systemd runs us). Returns the format."""
    from gateway.ops.logs import build_handler, choose_format

    chosen = choose_format(fmt)
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        handlers=[build_handler(chosen)],
    )
    return chosen


def glue_id_options(argv: list[str], id_options: tuple[str, ...]) -> list[str]:
    """Ids are base64url and may start with '-', which argparse would take for an option:
    `--gateway -abc` becomes `--gateway=-abc` for the options that take an id."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in id_options and i + 1 < len(argv):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


_gc_paused = False
#: Set (`set_defaults(settles_gc=True)`) by a command that calls `settle_gc` itself, once it has
#: imported what it needs; `run` settles before any other command.
SETTLES_GC = "settles_gc"


def pause_gc() -> None:
    """Start-up of a command run as its own process (the console script): no cyclic garbage
    collection while its modules are imported, until `settle_gc`. The objects they create live
    as long as the process; collecting would only walk them again and again (with the walk at
    exit, ~15% of a one-shot `streembit-peer read`)."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def settle_gc() -> None:
    """End the `pause_gc` pause (no-op without one): what exists now is kept for the life of the
    process out of the collector's sight (`gc.freeze`: neither later collections nor the one at
    exit walk it), and the collector runs again, for what the command itself creates."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def run(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    *,
    id_options: tuple[str, ...] = (),
) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(glue_id_options(raw, id_options))
    setup_logging(getattr(args, "log_level", "warning"))
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if handler is None:
        settle_gc()
        parser.print_help()
        return EXIT_USAGE
    if not getattr(args, SETTLES_GC, False):
        settle_gc()
    try:
        return handler(args)
    except StreembitError as exc:
        return fail(args, exc)
    except OSError as exc:  # a file of the command line: one line, not a traceback
        return fail(args, os_failure(exc))
    except KeyboardInterrupt:
        return 130
    finally:
        settle_gc()  # (a command that settles itself failed before it did)
