"""Run and state ids: time-ordered UUIDs (version 7), cheap to make and to index."""

from __future__ import annotations

import random
import time
import uuid

_getrandbits = random.getrandbits  # the module instance is reseeded in forked children
_RAND_B_MASK = (1 << 62) - 1
_new = object.__new__
_set = object.__setattr__
_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown


def new_id() -> uuid.UUID:
    """A new UUIDv7: 48-bit millisecond timestamp, then 74 random bits.

    Time order keeps SQLite's primary-key indexes appending at their end instead of
    inserting at random places; ``random.getrandbits`` avoids a system call per id, and the
    UUID is assembled directly because ``UUID(int=...)`` re-validates what we just built.
    """
    ms = time.time_ns() // 1_000_000
    rand = _getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & _RAND_B_MASK)
    new: uuid.UUID = _new(_UUID)
    _set(new, "int", value)
    _set(new, "is_safe", _UNKNOWN)
    return new
