"""Wire formats and subjects shared by every service."""

from ._codec import CONTENT_TYPE, JSON, MSGPACK, DecodeFailure, Decoder, decode, encode_json, encode_msgpack
from ._errors import ERROR_CODES, ErrorCode
from ._messages import *  # noqa: F403
from ._messages import __all__ as _messages_all
from ._subjects import MAX_TOKEN_LENGTH, Subjects, decode_token, encode_token

__all__ = [
    "CONTENT_TYPE",
    "ERROR_CODES",
    "JSON",
    "MAX_TOKEN_LENGTH",
    "MSGPACK",
    "DecodeFailure",
    "Decoder",
    "ErrorCode",
    "Subjects",
    "decode",
    "decode_token",
    "encode_json",
    "encode_msgpack",
    "encode_token",
    *_messages_all,
]
