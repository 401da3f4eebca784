"""Text and JSON as the store keeps them: always valid UTF-8, never raising in the writer.

A row is checked where it is made (``check_parameters``, ``check_text``: a ``ValueError``
naming the field reaches the caller); what is written anyway (task parameters, log lines) is
made safe here (``encode_json``, ``clean_text``, ``log_message``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "MAX_LINE_CHARS",
    "check_parameters",
    "check_text",
    "clean_text",
    "decode_extra",
    "encode_extra",
    "encode_json",
    "log_message",
    "pack_links",
    "safe_repr",
    "sanitize_row",
    "unpack_links",
]


def safe_repr(obj: object) -> str:
    """``repr(obj)`` that never raises and is always valid UTF-8 (a ``__repr__`` that fails
    gives the type's name; lone surrogates are escaped)."""
    try:
        text = repr(obj)
    except Exception as exc:
        text = f"<{type(obj).__name__} object: repr() raised {type(exc).__name__}>"
    return clean_text(text)


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates become ``\\udXXX`` escapes (a no-op, in C, for
    the usual ASCII text)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


_json_encoder = msgspec.json.Encoder(enc_hook=lambda obj: _short(safe_repr(obj)))


def _short(text: str, limit: int = 2_000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_json(value: Any) -> str:
    """JSON text of a value; what JSON cannot hold is stored as its (truncated) repr. Never
    raises (the writer thread calls it): a dict keeps its keys, each value that cannot be
    encoded stored as its repr."""
    try:
        return _json_encoder.encode(value).decode()
    except Exception:  # a recursive value, a lone surrogate, a huge int, a failing hook
        if isinstance(value, dict):
            return _json_encoder.encode(
                {clean_text(str(k)): _one_json(v) for k, v in value.items()}
            ).decode()
        return _json_encoder.encode(_short(safe_repr(value))).decode()


def _one_json(value: Any) -> Any:
    try:
        return msgspec.json.decode(_json_encoder.encode(value))
    except Exception:
        return _short(safe_repr(value))


def check_parameters(parameters: dict[str, Any], what: str = "Flow run") -> None:
    """Raise ``ValueError`` naming the parameter when one cannot be recorded faithfully as
    JSON text: a lone surrogate in a string, a value that contains itself. Called where the
    run is made, so the caller sees it, never the writer."""
    try:
        _json_encoder.encode(parameters)
        return
    except Exception as exc:
        error = exc
    for key, value in parameters.items():
        try:
            _json_encoder.encode(value)
        except Exception as exc:
            raise ValueError(f"{what} parameter {key!r} cannot be recorded: {_why(exc)}") from None
    raise ValueError(f"{what} parameters cannot be recorded: {_why(error)}") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "the value contains itself (a recursive list or dict)"
    if isinstance(exc, UnicodeEncodeError):
        return "a string holds a lone surrogate (not valid UTF-8)"
    return f"{type(exc).__name__}: {exc}"


def check_text(value: str | None, field: str) -> None:
    """Raise ``ValueError`` naming ``field`` when ``value`` is not valid UTF-8 text."""
    if value is None or value.isascii():
        return
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(
            f"{field} {clean_text(value)!r} holds a lone surrogate: it must be valid UTF-8 text"
        ) from None


# Longest log message stored, in characters (``logging.max_line_chars`` sets it per store).
MAX_LINE_CHARS = 1_000_000


def log_message(message: str, cap: int = MAX_LINE_CHARS) -> str:
    """A log message as stored: valid UTF-8, at most ``cap`` characters (a longer one keeps
    its head and a marker saying how much was cut)."""
    if len(message) > cap:
        cut = len(message) - cap
        marker = f"... [truncated {cut} characters: MILLSTREAM_LOGGING_MAX_LINE_CHARS]"
        message = message[:cap] + marker
    return clean_text(message)


def sanitize_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with every text made valid UTF-8 (the writer's fallback when a batch holding a
    row made elsewhere fails to bind)."""
    return tuple(clean_text(v) if isinstance(v, str) else v for v in row)


# -- a task run's upstream runs, a log line's extra fields --------------------------------------
_links_encoder = msgspec.msgpack.Encoder(uuid_format="bytes")
_links_decoder = msgspec.msgpack.Decoder(dict[str, list[uuid.UUID]])


def pack_links(links: dict[str, list[uuid.UUID]]) -> bytes | None:
    """A task run's upstream run ids by parameter as stored: msgpack, ids as 16 bytes."""
    return _links_encoder.encode(links) if links else None


def unpack_links(blob: bytes | None) -> dict[str, list[uuid.UUID]] | None:
    """``pack_links`` undone (a value it cannot read counts as no links)."""
    if not blob:
        return None
    try:
        return _links_decoder.decode(blob)
    except msgspec.DecodeError:
        return None


def encode_extra(extra: Mapping[str, Any], cap: int = MAX_LINE_CHARS) -> str:
    """A log line's extra fields as stored: a JSON object with text keys (a value JSON cannot
    hold is kept as its repr; never raises). Past ``cap`` characters in all, each long value
    is kept as the head of its JSON text, marked as truncated (the line's message is capped
    alike)."""
    fields = {clean_text(str(k)): v for k, v in extra.items()}
    text = encode_json(fields)
    if len(text) <= cap:
        return text
    share = max(cap // len(fields), 100)
    cut = {}
    for key, value in fields.items():
        one = encode_json(value)
        if len(one) > share:
            # A short text and the marker in place of the value: still one JSON object.
            cut[key] = log_message(one, share)
        else:
            cut[key] = value
    return encode_json(cut)


def decode_extra(text: str | None) -> dict[str, Any] | None:
    """``encode_extra`` undone (NULL, or text that is not a JSON object, gives None)."""
    if not text:
        return None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None
