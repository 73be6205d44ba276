"""A deterministic, seeded mutation fuzzer for every parser that reads untrusted input.

`targets.py` builds real samples with the project's own code (a sealed message, a signed DHT
record, an owner-signed ACL, QR payloads, companion frames, a config file, TDs) and wraps each
parser; `mutate.py` derives inputs from them; `engine.py` runs them and counts crashes: any
exception outside the project's error roots (`StreembitError`, the companion `FrameError`), or
one input taking longer than `SLOW_S`. `bench/fuzz.py` runs a large budget and prints a table;
tests/test_fuzz.py runs a short one on every CI.
"""
