import hashlib

import numpy as np
import pytest

from core.idhash import MAX_ID, IdError, stable_id


def reference(text: str) -> int:
    """The documented rule, written independently: BLAKE2b-64, big endian, top bit cleared."""
    return int(hashlib.blake2b(text.encode(), digest_size=8).hexdigest(), 16) % (1 << 63)


def test_integers_pass_through_and_digit_strings_agree():
    assert stable_id(42) == stable_id("42") == stable_id(" 42 ") == stable_id(np.int64(42)) == 42
    assert stable_id("007") == 7
    assert stable_id(3.0) == 3
    assert stable_id(MAX_ID) == MAX_ID


@pytest.mark.parametrize("text", ["u123", "video:9", "日本", "-5", str(1 << 63)])
def test_strings_hash_to_63_bits(text):
    value = stable_id(text)
    assert value == reference(text) and 0 <= value <= MAX_ID


def test_known_values_never_change():
    # Changing these breaks every model trained on earlier data: the rule is frozen.
    assert stable_id("u123") == 778163187600711631
    assert stable_id(-5) == 363106134237467462


def test_invalid_ids_raise():
    for bad in ("", "  ", None, True, 1.5):
        with pytest.raises(IdError):
            stable_id(bad)


def test_invalid_utf8_bytes_hash_by_bytes():
    assert stable_id(b"\xff\xfe") == int.from_bytes(
        hashlib.blake2b(b"\xff\xfe", digest_size=8).digest(), "big") & MAX_ID


def test_bom_whitespace_and_zero_width_characters_do_not_make_another_id():
    """Before: stable_id('\ufeffu9') != stable_id('u9') (a BOM mid-file made a new user)."""
    for raw in ("\ufeffu9", " u9 ", "\u200bu9\u2060", "\t\ufeff u9\r\n", b"\xef\xbb\xbfu9"):
        assert stable_id(raw) == stable_id("u9") == reference("u9")
    assert stable_id("\ufeff42") == 42
    assert stable_id("u\u200b9") != stable_id("u9")          # only the edges are trimmed
    with pytest.raises(IdError):
        stable_id("\ufeff \u200b")


def test_trimming_keeps_every_id_without_invisible_marks():
    """str.strip() and the new rule agree on all whitespace: no existing ID changes."""
    import sys
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    for s in spaces:
        assert stable_id(f"{s}u123{s}") == 778163187600711631
