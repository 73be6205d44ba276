"""Provisioning: the owner's key onto the gateway by QR code, claiming with a one-time setup
code, ownership transfer, factory reset, and the pairing data of ESP32 companions.

Modules (docs/provisioning.md):
  payload     the versioned, checksummed QR text (base38, like Matter's ``MT:``)
  qr          drawing (segno) and reading (zxing-cpp) QR codes
  camera      frame sources (picamera2, a folder) and the scanning loop
  setup_code  the one-time setup code, failure counter and lockout (``setup-code.json``)
  claim       the claim MAC (HKDF + HMAC-SHA256) and its check on the gateway
  transfer    owner-signed transfer statements (JWS ES256)
  reset       factory reset (command line, GPIO button)
  pairing     per-device credentials for the companions (``pairings.json``)
  events      audit records of local provisioning

This package imports no image or GPIO library at import time; `qr`, `camera` and `reset`'s
button load theirs when used.
"""
