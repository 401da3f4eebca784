"""Run and state ids: time-ordered UUIDs (version 7), cheap to make and to index.

Also the engine's own random generator (``rng``), for ids, run names and retry jitter: never the
``random`` module's shared instance, which the user may seed (``random.seed(0)`` in a task must not
make two runs share an id) and whose sequence the engine must not disturb.
"""

from __future__ import annotations

import os
import random
import time
import uuid

rng = random.Random()  # seeded from os.urandom
# A forked child must not repeat its parent's sequence (and so its ids): reseed it there.
os.register_at_fork(after_in_child=rng.seed)
_getrandbits = rng.getrandbits
_RAND_B_MASK = (1 << 62) - 1
_new = object.__new__
_set = object.__setattr__
_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown


def new_id() -> uuid.UUID:
    """A new UUIDv7: 48-bit millisecond timestamp, then 74 random bits.

    Time order keeps SQLite's primary-key indexes appending at their end instead of
    inserting at random places; the engine's ``rng`` avoids a system call per id, and the
    UUID is assembled directly because ``UUID(int=...)`` re-validates what we just built.
    """
    ms = time.time_ns() // 1_000_000
    rand = _getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & _RAND_B_MASK)
    new: uuid.UUID = _new(_UUID)
    _set(new, "int", value)
    _set(new, "is_safe", _UNKNOWN)
    return new
