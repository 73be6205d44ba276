# ruff: noqa  (runs under MicroPython too: written for both interpreters)
# A seeded mutation fuzz of the board's side of the companion link (frames.Session.open, which
# parses the payload), small enough for the MicroPython interpreter. Every mutated payload is sent
# in a correctly authenticated frame, so it reaches the JSON parser. Anything but a FrameError
# propagates (the runner then fails). Prints one line: RESULT {"inputs": N, "refused": R}
import json
import sys

import frames

KEY = bytes(range(32))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
state = [20261204]


def rnd(n):
    state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return state[0] % n


class Ctr:
    def __init__(self):
        self.v = 0

    def next(self):
        self.v += 1
        return self.v


SEEDS = [b'{"id":7,"set":{"relay":true,"pwm":0.5}}', b"{}", b'{"n":"' + b"cd" * 16 + b'"}']
TOKENS = [
    b"[" * 1000,
    b"{" * 600,
    b"9" * 900,
    b"1e400",
    b"-1e400",
    b"NaN",
    b"Infinity",
    b'"\\ud800"',
    b'{"a":1,"a":2}',
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"\x00",
    b'"',
    b"\\",
    b"[1,]",
    b"01",
    b"-",
    b"1" * 30 + b".5",
    b"[" * 9 + b"]" * 9,
    b'{"set":[]}',
]


def mutate(data):
    for _ in range(1 + rnd(3)):
        op = rnd(5)
        i = rnd(len(data) + 1)
        if op == 0 and data:
            j = rnd(len(data))
            data = data[:j] + bytes([rnd(256)]) + data[j + 1 :]
        elif op == 1:
            data = data[:i] + TOKENS[rnd(len(TOKENS))] + data[i:]
        elif op == 2:
            data = data[:i]
        elif op == 3:
            depth = (8, 9, 100, 500)[rnd(4)]
            data = data[:i] + b"[" * depth + data[i:] + b"]" * depth
        else:
            other = SEEDS[rnd(len(SEEDS))]
            data = data[:i] + other[rnd(len(other) + 1) :]
    return data[: frames.MAX_PAYLOAD]


board = frames.Session(KEY, "kitchen", frames.UP, Ctr())
refused = 0
for n in range(N):
    payload = mutate(SEEDS[rnd(len(SEEDS))])
    kind = "CKHW"[rnd(4)]
    frame = frames.encode(KEY, kind, frames.DOWN, "kitchen", n + 1, payload)
    board.floor = 0
    board.pending = "cd" * 16
    try:
        board.open(frame)
    except frames.FrameError:
        refused += 1
print("RESULT " + json.dumps({"inputs": N, "refused": refused}))
