"""Results recorded with runs: the envelope stored in a run's row (inline bytes or a file key).

Two reasons to record a result: the user asked for it (``persist_result``, caching), or the
recovery journal — a small result msgspec can encode without pickle is kept inline so that a
crashed flow run can be resumed without running its completed tasks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from millstream._engine.exceptions import SerializationError
from millstream._engine.model.ids import new_id
from millstream._engine.model.states import ResultLoader
from millstream._engine.results.faithful import MsgpackSerializer
from millstream._engine.results.keys import render_storage_key
from millstream._engine.results.serializers import resolve_serializer
from millstream._engine.results.storage import LocalFileSystem, resolve_storage

# Journal entries larger than this are not kept: recovery then runs that task again.
JOURNAL_MAX_BYTES = 64 * 1024


class Envelope(msgspec.Struct, array_like=True, omit_defaults=True):
    """How a result is stored: serializer name, then inline data or a storage path and key."""

    serializer: str
    data: bytes | None = None
    path: str | None = None
    key: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


class StoredResult(ResultLoader):
    """A recorded result, decoded the first time it is asked for."""

    __slots__ = ("_loaded", "_serializer", "_value", "blob")

    def __init__(self, blob: bytes, serializer: Any = None) -> None:
        self.blob = blob
        self._serializer = serializer
        self._loaded = False
        self._value: Any = None

    def load(self) -> Any:
        if not self._loaded:
            self._value = decode(self.blob, self._serializer)
            self._loaded = True
        return self._value

    def __repr__(self) -> str:
        envelope = _decoder.decode(self.blob)
        where = f"key={envelope.key!r}" if envelope.key else f"{len(envelope.data or b'')} bytes"
        return f"StoredResult(serializer={envelope.serializer!r}, {where})"


def decode(blob: bytes, serializer: Any = None) -> Any:
    """The value an envelope stands for (reading its file if it was stored as one)."""

    envelope = _decoder.decode(blob)
    if serializer is None or getattr(serializer, "type", None) != envelope.serializer:
        try:
            serializer = resolve_serializer(envelope.serializer)
        except ValueError as exc:
            raise SerializationError(
                f"Result was written with serializer {envelope.serializer!r}, which this "
                f"process cannot resolve: {exc}"
            ) from None
    if envelope.data is not None:
        data = envelope.data
    else:
        assert envelope.path is not None and envelope.key is not None
        data = LocalFileSystem(envelope.path).read(envelope.key)
    return serializer.loads(data)


_journal_serializer: Any = None


def journal(value: Any) -> bytes | None:
    """An inline envelope for the recovery journal, or None when the value is not kept."""
    global _journal_serializer
    serializer = _journal_serializer
    if serializer is None:
        serializer = _journal_serializer = MsgpackSerializer(pickle_fallback=False)
    try:
        data = serializer.dumps(value)
    except (SerializationError, TypeError, ValueError, OverflowError):
        return None
    if len(data) > JOURNAL_MAX_BYTES:
        return None
    return _encoder.encode(Envelope(serializer.type, data))


def persist(
    value: Any,
    *,
    serializer: Any,
    storage: Any,
    storage_key: str | None,
    parameters: Mapping[str, Any],
    inline_max_bytes: int,
    default_dir: Path,
    pickle_fallback: bool,
) -> tuple[bytes, Any]:
    """Encode (and if needed write) a result the user asked to persist.

    Returns the envelope and the resolved serializer; raises ``SerializationError`` naming the
    type when no serializer can encode the value, and then nothing has been written.
    """
    resolved = resolve_serializer(serializer, pickle_fallback=pickle_fallback)
    data = resolved.dumps(value)
    if storage_key is None and storage is None and len(data) <= inline_max_bytes:
        return _encoder.encode(Envelope(resolved.type, data)), resolved
    target = resolve_storage(storage, default_dir)
    key = render_storage_key(storage_key, parameters) if storage_key else new_id().hex
    target.write(key, data)
    return _encoder.encode(Envelope(resolved.type, None, str(target.basepath), key)), resolved
