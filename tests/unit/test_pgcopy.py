"""The binary COPY encoder's layout, checked byte by byte on one row (PostgreSQL parity is in tests/jobs)."""

from __future__ import annotations

import struct
from datetime import datetime

import pyarrow as pa
import pytest

from mallscore import pgcopy


def test_one_row_is_laid_out_fixed_fields_first_then_text():
    batch = pa.record_batch(
        {
            "name": pa.array(["ab"]),
            "id": pa.array([7], pa.int64()),
            "p": pa.array([0.25]),
            "ok": pa.array([True]),
            "at": pa.array([datetime(2000, 1, 1, 0, 0, 1)], pa.timestamp("us")),
        }
    )
    assert pgcopy.column_order(batch.schema) == ["id", "p", "ok", "at", "name"]
    expected = (
        struct.pack(">h", 5)
        + struct.pack(">iq", 8, 7)
        + struct.pack(">id", 8, 0.25)
        + struct.pack(">iB", 1, 1)
        + struct.pack(">iq", 8, 1_000_000)
        + struct.pack(">i", 2)
        + b"ab"
    )
    assert bytes(pgcopy.encode_batch(batch)) == expected


def test_nulls_and_unknown_types_are_refused():
    assert not pgcopy.encodable(pa.schema([("d", pa.date32())]))
    with pytest.raises(ValueError, match="NULL"):
        pgcopy.encode_batch(pa.record_batch({"id": pa.array([1, None], pa.int64())}))


def test_a_null_text_field_is_length_minus_one_without_bytes():
    batch = pa.record_batch({"id": pa.array([1, 2], pa.int64()), "why": pa.array([None, "age: older"])})
    expected = (
        struct.pack(">h", 2)
        + struct.pack(">iq", 8, 1)
        + struct.pack(">i", -1)
        + struct.pack(">h", 2)
        + struct.pack(">iq", 8, 2)
        + struct.pack(">i", 10)
        + b"age: older"
    )
    assert bytes(pgcopy.encode_batch(batch)) == expected
