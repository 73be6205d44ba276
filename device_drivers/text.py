"""The one cleaner of untrusted strings for logs, audit records and replies (peer names, device
bytes, exception messages): printable, one line, capped.

It lives in `device_drivers` (the lowest layer, which never imports `gateway`) so that drivers
use it too; `gateway.text` re-exports it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_CAP", "ELLIPSIS", "clean"]

DEFAULT_CAP: Final = 120  # characters of a peer-supplied string kept in logs and audit details
ELLIPSIS: Final = "…"  # ends a string that was cut at the cap


def clean(value: object, cap: int = DEFAULT_CAP, *, mark: str = "?", fold: bool = False) -> str:
    """VALUE (a string, else its repr) as one printable line of at most CAP characters.

    Every non-printable character (controls, line and paragraph separators, bidi overrides,
    format characters, ...) becomes MARK ("" drops it); with FOLD, runs of whitespace (tabs,
    newlines) first become one space. Text longer than CAP is cut and ends in an ellipsis.
    """
    text = value if isinstance(value, str) else repr(value)
    text = text[: cap * 4]  # bound the work: what is cleaned is cut at CAP anyway
    if fold:
        text = " ".join(text.split())
    if not text.isprintable():
        text = "".join(c if c.isprintable() else mark for c in text)
    return text if len(text) <= cap else text[: cap - 1] + ELLIPSIS
