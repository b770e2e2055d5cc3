"""cuid2 ids by a direct port of the `cuid2` package's algorithm (its version 2), for ids of 24 characters.

For the same random bytes, clock, counter and fingerprint, `CuidGenerator.create` returns what
`cuid2.Cuid(length=24).generate()` returns (tests/storage/test_identifiers.py checks it against the package).
An id is a random letter, then base-36 digits 2 to 24 of the SHA3-512 of: the clock in nanoseconds, 24 random
characters, the counter and the fingerprint, each in base 36.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Sequence
from hashlib import sha3_512
from itertools import count

CUID_LENGTH = 24
BASE36_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# The counter starts at a random number below this (the package's INITIAL_COUNT_MAX).
COUNTER_START_LIMIT = 476782367
# Random characters in the fingerprint, and its length (the package's BIG_LENGTH).
FINGERPRINT_LENGTH = 32
# The package draws its randomness as SystemRandom.random() floats, each made of 7 bytes of os.urandom; an id takes
# 25 of them: its first letter, then 24 salt characters.
UNIT_BYTES = 7
UNITS_PER_ID = 1 + CUID_LENGTH
# os.urandom is read for this many ids at a time: one system call where the package makes 25 per id.
IDS_PER_READ = 16

_PAIRS = tuple(high + low for high in BASE36_ALPHABET for low in BASE36_ALPHABET)
# 36**100 > 2**512: every SHA3-512 hash has fewer digits than the table has powers.
_POWERS_OF_36 = tuple(36**exponent for exponent in range(101))
_INDEX_TO_BASE36 = bytes.maketrans(bytes(range(36)), BASE36_ALPHABET.encode("ascii"))


def units_read(random_bytes: bytes) -> tuple[int, ...]:
    """The 7-byte big-endian numbers that `random_bytes` (a multiple of 7 bytes) holds, as SystemRandom reads them."""
    if len(random_bytes) % UNIT_BYTES:
        raise ValueError(f"units_read needs a multiple of {UNIT_BYTES} bytes, got {len(random_bytes)}")
    units = len(random_bytes) // UNIT_BYTES
    padded = bytearray(8 * units)
    for offset in range(UNIT_BYTES):
        # Byte `offset` of every unit at once, into 8-byte slots whose first byte stays zero.
        padded[1 + offset :: 8] = random_bytes[offset::UNIT_BYTES]
    return struct.unpack(f">{units}Q", padded)


def unit_indexes(units: Sequence[int], limit: int) -> list[int]:
    """floor(random() * limit) for each unit, where random() is SystemRandom's float: (unit >> 3) * 2**-53."""
    # (unit >> 3) * 2**-53 is exact, so the package's `* limit` rounds the exact product once; so does one
    # multiplication by the exact limit * 2**-53 (limit < 2**53): the same float. int() floors it, being >= 0.
    scale = limit * 2.0**-53
    return [int((unit >> 3) * scale) for unit in units]


def base36_encode(number: int) -> str:
    """The base-36 digits of a number >= 0, lowercase and without leading zeros ("0" for 0), as the package's."""
    if number < 0:
        raise ValueError(f"base36_encode needs a number >= 0, got {number}")
    pairs: list[str] = []
    while number >= 1296:
        number, pair = divmod(number, 1296)
        pairs.append(_PAIRS[pair])
    pairs.append(_PAIRS[number] if number >= 36 else BASE36_ALPHABET[number])
    pairs.reverse()
    return "".join(pairs)


def base36_slice(number: int, start: int, stop: int) -> str:
    """base36_encode(number)[start:stop] for start, stop >= 0 and 0 <= number < 36**100, writing only those digits."""
    if start < 0 or stop < 0 or not 0 <= number < _POWERS_OF_36[-1]:
        raise ValueError(
            f"base36_slice needs start, stop >= 0 and 0 <= number < 36**100, got [{start}:{stop}] of {number}"
        )
    digit_count = max(bisect_right(_POWERS_OF_36, number), 1)
    stop = min(stop, digit_count)
    width = stop - start
    if width <= 0:
        return ""
    window = number // _POWERS_OF_36[digit_count - stop] % _POWERS_OF_36[width]
    pairs: list[str] = []
    for _ in range((width + 1) // 2):
        window, pair = divmod(window, 1296)
        pairs.append(_PAIRS[pair])
    pairs.reverse()
    digits = "".join(pairs)
    return digits[len(digits) - width :]


def hash_digits(text: str, start: int, stop: int) -> str:
    """Base-36 digits [start:stop] of the SHA3-512 of `text` (UTF-8) read as a big-endian number."""
    return base36_slice(int.from_bytes(sha3_512(text.encode()).digest(), "big"), start, stop)


def cuid_compose(letter: str, salt: str, time_ns: int, counter_value: int, fingerprint: str) -> str:
    """The id the package makes from its first letter, salt, clock reading, counter value and fingerprint."""
    hashed = base36_encode(time_ns) + salt + base36_encode(counter_value) + fingerprint
    # The package's hash drops its first digit (it biases the histogram); the id skips one more, for its letter.
    return letter + hash_digits(hashed, 2, CUID_LENGTH + 1)


def fingerprint_create(random_bytes: bytes, data: str = "") -> str:
    """The package's fingerprint from `data` (when empty: the pid, host name and environment variable names) and
    32 units of 7 random bytes."""
    if not data:
        data = str(os.getpid()) + socket.gethostname() + "".join(os.environ.keys())
    entropy = "".join([BASE36_ALPHABET[index] for index in unit_indexes(units_read(random_bytes), 36)])
    return hash_digits(data + entropy, 1, FINGERPRINT_LENGTH + 1)


def counter_create(start: int) -> Callable[[], int]:
    """The package's counter: start + 1, start + 2, ... one per call."""
    return count(start + 1).__next__


class CuidGenerator:
    """Makes cuid2 ids of 24 characters as `cuid2.Cuid(length=24).generate` does. Safe to share between threads.

    `urandom` gives the random bytes (os.urandom; read for 16 ids at a time), `clock` the time in nanoseconds;
    `counter` and `fingerprint_data` are the package's `counter` and `fingerprint_data`.
    """

    # The letters and salts read ahead for the next ids, and the slot of the next id among them.
    _letters: list[str]
    _salts: str
    _next_slot: int

    def __init__(
        self,
        urandom: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], int] = time.time_ns,
        counter: Callable[[int], Callable[[], int]] = counter_create,
        fingerprint_data: str = "",
    ) -> None:
        self._urandom = urandom
        self._clock = clock
        # In the package's order: the counter's start, then the fingerprint's random characters.
        self._counter = counter(unit_indexes(units_read(urandom(UNIT_BYTES)), COUNTER_START_LIMIT)[0])
        self.fingerprint = fingerprint_create(urandom(UNIT_BYTES * FINGERPRINT_LENGTH), fingerprint_data)
        self._lock = threading.Lock()
        self._random_drop()
        _generators.add(self)

    def create(self) -> str:
        """A new id."""
        with self._lock:
            slot = self._next_slot
            if slot == IDS_PER_READ:
                self._random_read()
                slot = 0
            self._next_slot = slot + 1
            letter = self._letters[slot]
            salts = self._salts
            counter_value = self._counter()
        start = slot * UNITS_PER_ID + 1
        return cuid_compose(letter, salts[start : start + CUID_LENGTH], self._clock(), counter_value, self.fingerprint)

    def _random_read(self) -> None:
        """Reads the letters and salts of the next IDS_PER_READ ids (the caller holds the lock)."""
        units = units_read(self._urandom(UNIT_BYTES * UNITS_PER_ID * IDS_PER_READ))
        self._letters = [LETTERS[index] for index in unit_indexes(units[::UNITS_PER_ID], len(LETTERS))]
        # Every unit as a base-36 character; create() skips the first of each id's 25, the unit its letter came from.
        self._salts = bytes(unit_indexes(units, 36)).translate(_INDEX_TO_BASE36).decode("ascii")

    def _random_drop(self) -> None:
        """Forgets the letters and salts read ahead, so that the next id reads new ones."""
        self._letters = []
        self._salts = ""
        self._next_slot = IDS_PER_READ

    def _after_fork_in_child(self) -> None:
        """A forked child must not reuse the bytes its parent read ahead, nor a lock a parent's thread held."""
        self._lock = threading.Lock()
        self._random_drop()


_generators: weakref.WeakSet[CuidGenerator] = weakref.WeakSet()


def _generators_after_fork_in_child() -> None:
    """Runs in the child after os.fork (multiprocessing's fork too)."""
    for generator in _generators:
        generator._after_fork_in_child()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_generators_after_fork_in_child)
