"""Fuzz every parser that reads untrusted input; print inputs and crashes per parser.

Deterministic: the same `--seed` gives the same inputs (tests/fuzz/: the samples are made with
the project's own code, the mutators are seeded). A crash is any exception outside the project's
error roots (`StreembitError`, the companion `FrameError`) or one input taking over 1 s.
Exits 1 when there was a crash; `--save DIR` keeps each crash's first input there.

    .venv/bin/python bench/fuzz.py                      # 1 000 000 inputs over every parser
    .venv/bin/python bench/fuzz.py --inputs 20000 --only acl,config
    nice .venv/bin/python bench/fuzz.py --jobs 2        # the parsers split over 2 processes
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.engine import SLOW_S, Result, run
from tests.fuzz.targets import make_targets


def _one(name: str, inputs: int, seed: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="streembit-fuzz-") as work:
        target = next(t for t in make_targets(Path(work)) if t.name == name)
        return run(target, inputs, seed)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--inputs", type=int, default=1_000_000, help="total, split over the parsers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", default="", help="comma list of target name parts (acl,config,...)")
    p.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    p.add_argument("--save", type=Path, help="write each crash's first input into this folder")
    args = p.parse_args()
    logging.disable(logging.CRITICAL)  # refusals are logged by the code under test: not here

    with tempfile.TemporaryDirectory() as work:
        names = [t.name for t in make_targets(Path(work))]
    if args.only:
        wanted = args.only.split(",")
        names = [n for n in names if any(w in n for w in wanted)]
    per = max(1, args.inputs // max(1, len(names)))
    started = time.perf_counter()
    print(
        f"{'parser':26} {'inputs':>9} {'refused':>9} {'crashes':>8} {'seconds':>8} {'slowest':>8}",
        flush=True,
    )
    results: list[Result] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(_one, names, [per] * len(names), [args.seed] * len(names)):
            results.append(r)
            print(
                f"{r.target:26} {r.inputs:9d} {r.refused:9d} {r.crash_count:8d} "
                f"{r.seconds:8.1f} {r.slowest * 1000:6.1f}ms",
                flush=True,
            )
    total = sum(r.inputs for r in results)
    crashes = sum(r.crash_count for r in results)
    print(f"{'total':26} {total:9d} {'':9} {crashes:8d} {time.perf_counter() - started:8.1f}")
    print(f"seed {args.seed}; a crash: an exception outside the error roots, or over {SLOW_S} s")
    for r in results:
        for i, crash in enumerate(r.crashes.values()):
            print(f"CRASH {crash}")
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{r.target.replace('/', '_')}-{i}.bin").write_bytes(crash.sample)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
