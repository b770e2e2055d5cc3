"""cuid_create: the ids of the `cuid2` package, made by a direct port of its algorithm (daycare/storage/cuid.py)."""

from __future__ import annotations

import functools
import math
import os
import random
import re
import select
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import cuid2.generator
import pytest
from cuid2 import Cuid
from cuid2.utils import base36_encode as package_base36_encode
from cuid2.utils import create_fingerprint

from daycare.storage.cuid import (
    COUNTER_START_LIMIT,
    CuidGenerator,
    base36_encode,
    base36_slice,
    cuid_compose,
    fingerprint_create,
    unit_indexes,
    units_read,
)
from daycare.storage.identifiers import cuid_create

ROOT = Path(__file__).resolve().parents[2]
CUID_PATTERN = re.compile(r"[a-z][0-9a-z]{23}")


class ByteStream:
    """Hands out the bytes of `data` in order, as os.urandom would hand out random ones."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def read(self, size: int) -> bytes:
        chunk = self._data[self._position : self._position + size]
        if len(chunk) != size:
            raise AssertionError("the test's byte stream ran out: give it more bytes")
        self._position += size
        return chunk


class ByteStreamRandom(random.SystemRandom):
    """SystemRandom whose bytes come from a ByteStream instead of os.urandom: CPython's SystemRandom.random()."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        super().__init__()

    def random(self) -> float:
        return (int.from_bytes(self._stream.read(7), "big") >> 3) * 2.0**-53


def clock_readings(seed: int, count: int) -> Iterator[int]:
    """Clock readings in nanoseconds: today's, and numbers of every size down to 0 (base 36 of any length)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield rng.getrandbits(rng.choice([0, 1, 6, 30, 61, 61, 61, 64, 90]))


def counter_in_big_steps(start: int) -> Callable[[], int]:
    """A counter for both generators whose values outgrow any real one."""
    return iter(range(start * 10**12, 10**40, 10**20 + 7)).__next__


def test_the_test_random_is_systemrandom_on_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(1).randbytes(7 * 2000)
    monkeypatch.setattr(random, "_urandom", ByteStream(data).read)
    standard, double = random.SystemRandom(), ByteStreamRandom(ByteStream(data))
    assert [standard.random() for _ in range(2000)] == [double.random() for _ in range(2000)]


@pytest.mark.parametrize("seed", range(12))
def test_ids_are_the_packages_for_the_same_bytes_clock_counter_and_fingerprint(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = 1000  # 12 seeds: 12,000 ids, each batch of os.urandom reads crossed many times
    data = random.Random(seed).randbytes(7 * (1 + 32 + 25 * ids + 25 * 16))
    # Half the seeds take the fingerprint from this process (pid, host, environment), half from given data.
    fingerprint_data = "" if seed % 2 else f"host-{seed}-ünïcode"
    # A third of the seeds give both the same counter; the others leave each its own default.
    counters = {"counter": counter_in_big_steps} if seed % 3 == 0 else {}
    readings = list(clock_readings(seed, ids))
    package_clock = iter(readings)
    monkeypatch.setattr(cuid2.generator, "time", types.SimpleNamespace(time_ns=lambda: next(package_clock)))
    package_stream = ByteStream(data)
    package = Cuid(
        random_generator=lambda: ByteStreamRandom(package_stream),
        length=24,
        fingerprint=functools.partial(create_fingerprint, fingerprint_data=fingerprint_data),
        **counters,
    )
    port = CuidGenerator(
        urandom=ByteStream(data).read, clock=iter(readings).__next__, fingerprint_data=fingerprint_data, **counters
    )

    assert port.fingerprint == package._fingerprint
    port_ids = [port.create() for _ in range(ids)]
    package_ids = [package.generate() for _ in range(ids)]
    assert port_ids == package_ids
    assert len(set(port_ids)) == ids


def test_base36_is_the_packages() -> None:
    numbers = [0, 1, 35, 36, 37, 1295, 1296, 1297, 2**64, 2**512 - 1, 36**100 - 1]
    numbers += [36**exponent + delta for exponent in range(1, 100) for delta in (-1, 0, 1)]
    rng = random.Random(7)
    numbers += [rng.getrandbits(rng.randrange(1, 517)) for _ in range(3000)]
    for number in numbers:
        digits = package_base36_encode(number)
        assert base36_encode(number) == digits
        for start, stop in [(0, 200), (1, 33), (2, 25), (0, 1), (5, 3), (len(digits) - 1, len(digits) + 5)]:
            assert base36_slice(number, max(start, 0), stop) == digits[max(start, 0) : stop], (number, start, stop)
        start, stop = rng.randrange(0, 110), rng.randrange(0, 110)
        assert base36_slice(number, start, stop) == digits[start:stop], (number, start, stop)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: base36_encode(-1), "needs a number >= 0, got -1"),
        (lambda: base36_slice(-1, 0, 3), r"needs start, stop >= 0 and 0 <= number < 36\*\*100"),
        (lambda: base36_slice(36**100, 0, 3), r"0 <= number < 36\*\*100"),
        (lambda: base36_slice(5, -1, 3), r"got \[-1:3\] of 5"),
        (lambda: units_read(bytes(8)), "needs a multiple of 7 bytes, got 8"),
    ],
)
def test_out_of_range_input_is_refused_saying_what_was_wrong(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_units_are_read_as_systemrandom_reads_its_7_bytes() -> None:
    data = random.Random(3).randbytes(7 * 500) + bytes(7) + b"\xff" * 7
    assert units_read(data) == tuple(int.from_bytes(data[at : at + 7], "big") for at in range(0, len(data), 7))


@pytest.mark.parametrize("limit", [26, 36, COUNTER_START_LIMIT])
def test_indexes_are_the_packages_floor_at_every_boundary(limit: int) -> None:
    """floor(random() * limit) with the package's float, where rounding could differ: the units next to j / limit."""
    rng = random.Random(limit)
    boundaries = range(limit + 1) if limit < 100 else sorted(rng.sample(range(limit), 2000))
    units = []
    for boundary in boundaries:
        first = -(-boundary * 2**53 // limit)  # the smallest 53-bit fraction k with k / 2**53 * limit >= boundary
        for fraction in range(max(first - 4, 0), min(first + 4, 2**53)):
            units.extend((fraction << 3) | low_bits for low_bits in (0, 5, 7))
    units += [rng.getrandbits(56) for _ in range(20_000)]
    expected = [math.floor((unit >> 3) * 2.0**-53 * limit) for unit in units]  # the package: floor(random() * limit)
    assert unit_indexes(units, limit) == expected


def test_100k_ids_have_the_cuid2_form_and_are_all_different() -> None:
    ids = [cuid_create() for _ in range(100_000)]
    assert all(CUID_PATTERN.fullmatch(id_) for id_ in ids), next(id_ for id_ in ids if not CUID_PATTERN.fullmatch(id_))
    assert len(set(ids)) == len(ids)
    # The first letter is random among a-z, the other 23 characters among 0-9a-z.
    assert {id_[0] for id_ in ids} == set("abcdefghijklmnopqrstuvwxyz")
    assert set("".join(id_[1:] for id_ in ids)) == set("0123456789abcdefghijklmnopqrstuvwxyz")


def test_the_counter_advances_by_one_per_id() -> None:
    """With random bytes all zero and a stopped clock, only the counter tells the ids apart."""
    port = CuidGenerator(urandom=bytes, clock=lambda: 1_764_657_000_000_000_000, fingerprint_data="host")
    ids = [port.create() for _ in range(500)]
    # Zero bytes: counter start 0, letter "a", salt "0" * 24.
    assert port.fingerprint == fingerprint_create(bytes(7 * 32), "host")
    assert ids == [cuid_compose("a", "0" * 24, 1_764_657_000_000_000_000, 1 + n, port.fingerprint) for n in range(500)]


def stalled_generator(urandom: Callable[[int], bytes] = os.urandom) -> CuidGenerator:
    """A generator whose clock and counter never move: only its random bytes tell its ids apart."""
    return CuidGenerator(urandom=urandom, clock=lambda: 1_764_657_000_000_000_000, counter=lambda start: lambda: 7)


def test_every_id_draws_new_random_bytes() -> None:
    port = stalled_generator()
    ids = [port.create() for _ in range(5000)]
    assert len(set(ids)) == len(ids)


def test_threads_sharing_a_generator_never_draw_the_same_bytes() -> None:
    port = stalled_generator()
    made: list[list[str]] = [[] for _ in range(8)]

    def work(into: list[str]) -> None:
        for _ in range(2000):
            into.append(port.create())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=work, args=(into,)) for into in made]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    ids = [id_ for into in made for id_ in into]
    assert len(ids) == 16_000
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_reuse_the_bytes_its_parent_read_ahead() -> None:
    port = stalled_generator()
    before = [port.create() for _ in range(3)]  # the generator now holds bytes read ahead for 13 more ids
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids go to the parent through the pipe
        try:
            os.write(writer, " ".join(port.create() for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    parent_ids = [port.create() for _ in range(20)]
    with os.fdopen(reader) as pipe:
        child_ids = pipe.read().split()
    assert os.waitpid(pid, 0)[1] == 0
    assert len(child_ids) == 20
    assert not set(child_ids) & set(parent_ids)
    assert len(set(before + parent_ids + child_ids)) == 43


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_child_forked_while_another_thread_makes_an_id_can_make_ids() -> None:
    """The generator's lock, held by a parent's thread at the fork, must not stay held in the child."""
    port = stalled_generator()
    held, fork_done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with port._lock:  # as a thread in the middle of create() does
            held.set()
            fork_done.wait()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(writer, port.create().encode())
        finally:
            os._exit(0)
    fork_done.set()
    holder.join()
    os.close(writer)
    ready, _, _ = select.select([reader], [], [], 60)
    if not ready:  # the child hangs on the lock: stop it before failing
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with os.fdopen(reader) as pipe:
        child_id = pipe.read() if ready else ""
    assert CUID_PATTERN.fullmatch(child_id), "the forked child could not make an id: the lock stayed held"


def test_two_processes_make_different_ids_and_import_no_cuid2() -> None:
    script = (
        "import sys\n"
        "from daycare.storage import identifiers\n"
        "print('cuid2' in sys.modules, identifiers._cuid_generator.fingerprint)\n"
        "print(' '.join(identifiers.cuid_create() for _ in range(20000)))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0].splitlines() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert [output[0].split()[0] for output in outputs] == ["False", "False"]  # cuid2 is a test dependency only
    fingerprints = [output[0].split()[1] for output in outputs]
    assert len(set(fingerprints)) == 2
    first, second = (set(output[1].split()) for output in outputs)
    mine = {cuid_create() for _ in range(20000)}
    assert len(first) == len(second) == len(mine) == 20000
    assert not first & second and not first & mine and not second & mine
