"""Encoding on the bus: msgpack for internal streams, JSON for what people subscribe to.

The encoding travels in the `Content-Type` header, so readers never guess. Encoders and
decoders are created once (msgspec's advice) and reused.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar, overload

import msgspec

from ..safetext import one_line

__all__ = [
    "CONTENT_TYPE",
    "JSON",
    "MSGPACK",
    "DecodeFailure",
    "Decoder",
    "decode",
    "encode_json",
    "encode_msgpack",
]

T = TypeVar("T")

CONTENT_TYPE: Final = "Content-Type"
MSGPACK: Final = "application/msgpack"
JSON: Final = "application/json"

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


class DecodeFailure(ValueError):
    """A payload that is not a valid message of the expected type (the reason says where)."""


# msgspec quotes the offending value ("Invalid value '…' - at `$.type`"): a reason is kept in a
# dead letter and logged, so it is bounded and escaped like any text from outside
_REASON_CHARS: Final = 1000


def encode_msgpack(obj: Any) -> tuple[bytes, dict[str, str]]:
    return _msgpack_encoder.encode(obj), {CONTENT_TYPE: MSGPACK}


def encode_json(obj: Any) -> tuple[bytes, dict[str, str]]:
    return _json_encoder.encode(obj), {CONTENT_TYPE: JSON}


class Decoder:
    """Decodes one message type (usually a tagged union) in either encoding."""

    __slots__ = ("_json", "_msgpack", "type")

    def __init__(self, type_: Any) -> None:
        self.type = type_
        self._json = msgspec.json.Decoder(type_)
        self._msgpack = msgspec.msgpack.Decoder(type_)

    def decode(self, data: bytes, headers: dict[str, str] | None = None) -> Any:
        kind = (headers or {}).get(CONTENT_TYPE, "")
        try:
            if kind == JSON or (not kind and data[:1] in (b"{", b"[")):
                return self._json.decode(data)
            return self._msgpack.decode(data)
        except msgspec.ValidationError as exc:
            raise DecodeFailure(one_line(f"invalid message: {exc}", _REASON_CHARS)) from None
        except msgspec.DecodeError as exc:
            why = f"undecodable payload ({kind or 'no content type'}): {exc}"
            raise DecodeFailure(one_line(why, _REASON_CHARS)) from None


_decoders: dict[Any, Decoder] = {}


@overload
def decode(data: bytes, type_: type[T], headers: dict[str, str] | None = None) -> T: ...


@overload
def decode(data: bytes, type_: Any, headers: dict[str, str] | None = None) -> Any: ...  # a union of Structs


def decode(data: bytes, type_: Any, headers: dict[str, str] | None = None) -> Any:
    """Decode `data` as `type_` (a Struct or a tagged union); DecodeFailure says what is wrong."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = Decoder(type_)
    return decoder.decode(data, headers)
