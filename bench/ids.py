#!/usr/bin/env python3
"""cuid_create (the port of cuid2 in daycare/storage/cuid.py) against the `cuid2` package, interleaved.

    python bench/ids.py [--rounds 7] [--ids 20000]

Each round times `ids` ids from each generator in turn: the port, the package as daycare used it
(`Cuid(length=24).generate`, SystemRandom: os.urandom per draw), and, for reference, the package given a
`random.Random` seeded from `secrets` (not cryptographically secure; the issue's 17 us variant). Figures are
microseconds of CPU time per id: each round's with its package / port ratio, then the median and best over
the rounds; a round's ratio compares runs a few milliseconds apart, the figure a busy machine disturbs least.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cuid2 import Cuid

from daycare.storage.identifiers import cuid_create


def microseconds_per_id(create: Callable[[], str], ids: int) -> float:
    """CPU time (user and system) of `ids` calls of `create`, per call, in microseconds."""
    # The thread's CPU time, not the wall clock: on a shared machine, time spent waiting for a core is not the ids'.
    started = time.thread_time()
    for _ in range(ids):
        create()
    return (time.thread_time() - started) / ids * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ids", type=int, default=20_000)
    arguments = parser.parse_args()
    generators: dict[str, Callable[[], str]] = {
        "port": cuid_create,
        "package": Cuid(length=24).generate,
        "package+Random": Cuid(random_generator=lambda: random.Random(secrets.randbits(256)), length=24).generate,
    }
    for create in generators.values():
        microseconds_per_id(create, 1000)  # warm-up
    figures: dict[str, list[float]] = {name: [] for name in generators}
    ratios: list[float] = []
    print("round " + " ".join(f"{name:>15}" for name in generators) + "   package / port   (us/id)")
    for round_number in range(1, arguments.rounds + 1):
        for name, create in generators.items():
            figures[name].append(microseconds_per_id(create, arguments.ids))
        ratios.append(figures["package"][-1] / figures["port"][-1])
        print(
            f"{round_number:5} "
            + " ".join(f"{figures[name][-1]:15.2f}" for name in generators)
            + f"   {ratios[-1]:13.2f}x"
        )
    for label, pick in (("median", statistics.median), ("best", min)):
        values = {name: pick(values) for name, values in figures.items()}
        print(
            f"{label:6}"
            + " ".join(f"{values[name]:15.2f}" for name in generators)
            + f"   {values['package'] / values['port']:13.2f}x   (package+Random / port: "
            f"{values['package+Random'] / values['port']:.2f}x)"
        )
    print(f"median of the rounds' package / port ratios: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
