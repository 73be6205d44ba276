"""The one cleaner of untrusted strings (device_drivers.text, re-exported by gateway.text)."""

from __future__ import annotations

from device_drivers.tasks import describe
from gateway.text import PEER_STRING_CAP, clean


def test_non_printable_characters_are_marked_and_long_text_capped() -> None:
    assert clean("bob\x1b[31m\r\nx\u202e\u2028\x00") == "bob?[31m??x???"
    assert clean(b"a\n") == "b'a\\n'"  # not a string: its repr
    long = clean("v" * 1000)
    assert len(long) == PEER_STRING_CAP and long.endswith("…")


def test_the_audit_form_drops_and_the_exception_form_folds() -> None:
    assert clean("bob\x1b[31m\r\nFAKE\u202e\x00", 200, mark="") == "bob[31mFAKE"
    assert clean("x\ty\n z\x00", fold=True) == "x y z?"
    assert describe(OSError("x\ty\n z\x00")) == "OSError: x y z?"
