"""The one stable ID hash: any raw ID (int or string) -> non-negative int64 (63 bits).

Shared by the Beam job and the serving client, so the IDs a model was trained on are the
IDs it is served with. The rule, which must never change once data has been written:

0. Text is trimmed first: whitespace, byte-order marks and zero-width characters around it
   are removed ("\ufeffu9", " u9 " and "u9" are one ID: a BOM at the start of a file, or of
   a file concatenated into the middle of another, must not make a different user).
1. An integer in [0, 2**63), or a string of decimal digits whose value is in that range,
   maps to that integer ("42", " 42 " and 42 are the same ID; so are "007" and 7).
2. Anything else (other strings, negative numbers, bytes) maps to the first 8 bytes of
   BLAKE2b(utf-8 bytes of its text, digest_size=8), big-endian, with the top bit cleared.

The model buckets these int64 IDs into embedding rows itself, so no vocabulary file exists.

Example:
    stable_id("u123")  # 778163187600711631 (any machine, any Python version)
    stable_id(42) == stable_id("42") == 42
"""
from __future__ import annotations

import hashlib
import re

MAX_ID = (1 << 63) - 1
# \s is Unicode whitespace, the set str.strip() removes, so IDs without invisible
# characters hash as before; added: BOM / zero-width no-break space, zero-width space,
# non-joiner, joiner and word joiner.
_EDGES = re.compile(r"^[\s\ufeff\u200b\u200c\u200d\u2060]+|[\s\ufeff\u200b\u200c\u200d\u2060]+$")


class IdError(ValueError):
    """The value cannot be used as an ID (empty, a bool, a non-integral float, ...)."""


def hash_text(text: str | bytes) -> int:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") & MAX_ID


def normalize(text: str) -> str:
    """The text an ID is hashed from: surrounding whitespace and invisible marks removed."""
    return _EDGES.sub("", text)


def stable_id(value) -> int:
    """Maps a raw ID to its int64 form (see the module docstring for the rule)."""
    if isinstance(value, bool) or value is None:
        raise IdError(f"not an ID: {value!r}")
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
        value = int(value)
        return value if 0 <= value <= MAX_ID else hash_text(str(value))
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        value = float(value)
        if not value.is_integer():
            raise IdError(f"not an integral ID: {value!r}")
        return stable_id(int(value))
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return hash_text(value)
    if not isinstance(value, str):
        raise IdError(f"not an ID: {value!r} ({type(value).__name__})")
    text = normalize(value)
    if not text:
        raise IdError("empty ID")
    if text.isascii() and text.isdigit():
        number = int(text)
        if number <= MAX_ID:
            return number
    return hash_text(text)
