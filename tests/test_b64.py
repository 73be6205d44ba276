"""The one base64url codec (gateway.b64) and the one header pre-parser (gateway.compact)."""

from __future__ import annotations

import base64
import os

import pytest
from joserfc.util import urlsafe_b64decode

from gateway.b64 import Base64UrlError, b64url_decode, b64url_encode
from gateway.compact import json_segment, peek_header
from gateway.jsonsafe import DEFAULT_LIMITS, JsonInputError


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33, 64])
def test_round_trip_and_joserfc_agree(size: int) -> None:
    data = os.urandom(size)
    text = b64url_encode(data)
    assert "=" not in text and b64url_decode(text) == data == urlsafe_b64decode(text.encode())
    assert b64url_decode(text.encode()) == data


@pytest.mark.parametrize(
    "bad",
    ["QQ==", "QQ=", "a+b/", "QQ Q", "QQ\n", "Q", "QR", "QUJ", "é", "QQ.", "\x00\x00"],
)
def test_only_canonical_unpadded_base64url_is_accepted(bad: str) -> None:
    with pytest.raises(Base64UrlError):
        b64url_decode(bad)
    try:
        joserfc_ok = urlsafe_b64decode(bad.encode()) is not None
    except (ValueError, UnicodeEncodeError):
        joserfc_ok = False
    assert not joserfc_ok  # joserfc, which verifies the JWS afterwards, refuses it too


def test_peek_header_reads_segment_0_under_the_limits() -> None:
    head = base64.urlsafe_b64encode(b'{"alg":"ES256"}').rstrip(b"=").decode()
    assert peek_header(f"{head}.e30.sig", DEFAULT_LIMITS) == {"alg": "ES256"}
    assert peek_header(f"{head}.x".encode(), DEFAULT_LIMITS) == {"alg": "ES256"}
    assert json_segment(head, DEFAULT_LIMITS, what="h") == {"alg": "ES256"}
    with pytest.raises(Base64UrlError):
        peek_header(head, DEFAULT_LIMITS)  # no "."
    with pytest.raises(Base64UrlError):
        peek_header(f"{head}=.e30.", DEFAULT_LIMITS)
    dup = b64url_encode(b'{"alg":"ES256","alg":"none"}')
    with pytest.raises(JsonInputError, match="duplicate"):
        peek_header(f"{dup}.e30.", DEFAULT_LIMITS)
    with pytest.raises(JsonInputError):
        peek_header(f"{b64url_encode(b'[1]')}.e30.", DEFAULT_LIMITS)  # not an object
