"""Is a DuckDB file whole? Damage found before DuckDB opens it, right after, or by a query.

A truncated warehouse must be refused (exit 78) before anything writes to it
or copies it over a good backup. :func:`check_intact` reads the file's headers
(before DuckDB opens it); :func:`missing_blocks` asks an open connection which
blocks the database uses and checks they lie inside the file; :func:`damage`
recognises what DuckDB says when a query meets a damaged block. Each gives one
line that names the file and says to restore the newest good backup.
"""

from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import duckdb

from mallscore.errors import ConfigError

# DuckDB's file layout (storage versions 64-69): a 4 KiB main header ("DUCK" at byte 8), then two
# 4 KiB database headers, each a checksum and then uint64 fields: iteration, meta block, free list,
# block count, block allocation size, ...; the active header is the one with the higher iteration,
# and the blocks follow at 12 KiB.
_HEADER_BYTES = 3 * 4096
_DB_HEADER = struct.Struct("<QQQQQQ")  # checksum, iteration, meta_block, free_list, block_count, block_alloc_size
_INVALID = (1 << 64) - 1
_BLOCK_ID = (1 << 56) - 1  # a metadata pointer keeps its index inside the block in the top byte
_NAMED_FILE = re.compile(r'file "([^"]+)"')
# What DuckDB says when a file cannot be read whole (checked against duckdb 2.0.1 on truncated and flipped files).
_DAMAGE = (
    "could not read enough bytes",
    "corrupt database file",
    "does not match stored checksum",
    "not a valid duckdb database file",
    "failure while replaying wal",
    "database has been invalidated",
    "wal does not match",
)


def damaged_message(path: Path, detail: str) -> str:
    """The one line every command prints for a warehouse that cannot be read whole."""
    return (
        f"warehouse {path} is damaged and cannot be read ({detail}); its files were left untouched: "
        "restore the newest good backup (README: Operations, A damaged warehouse)"
    )


def damage(exc: BaseException, path: Path | str | None = None) -> ConfigError | None:
    """The ConfigError (78) for a DuckDB error that means a file cannot be read whole, else None."""
    if not isinstance(exc, duckdb.Error):
        return None
    text = str(exc)
    if not any(marker in text.lower() for marker in _DAMAGE):
        return None
    first = text.splitlines()[0] if text else type(exc).__name__
    named = _NAMED_FILE.search(first)
    if named and not named.group(1).endswith(".wal"):
        path = named.group(1)  # DuckDB named the file it could not read: say that one
    if path is None:
        return ConfigError(f"a DuckDB file is damaged ({first}); it was left untouched: see README, Operations")
    return ConfigError(damaged_message(Path(path), first))


def _header_blocks(header: bytes) -> tuple[int, int] | None:
    """(highest block the active header points at, block size), or None when the header is not one we read.

    The header's block count is no bound: DuckDB truncates free blocks at the
    end of the file and keeps the count. The metadata and free-list blocks the
    active header points at must exist.
    """
    if len(header) < _HEADER_BYTES or header[8:12] != b"DUCK":
        return None
    best = None
    for offset in (4096, 8192):
        _, iteration, meta_block, free_list, _, alloc = _DB_HEADER.unpack_from(header, offset)
        if not (4096 <= alloc <= (1 << 30) and alloc % 4096 == 0):
            continue
        pointers = [p & _BLOCK_ID for p in (meta_block, free_list) if p != _INVALID]
        if best is None or iteration > best[0]:
            best = (iteration, max(pointers, default=-1), alloc)
    return None if best is None else (best[1], best[2])


def _needs(block: int, alloc: int) -> int:
    return _HEADER_BYTES + (block + 1) * alloc


def truncation(path: Path, attempts: int = 5) -> str | None:
    """Why the file at ``path`` is shorter than its own header says (truncated), or None; reads only.

    Header, size, header again: a writer checkpointing meanwhile changes the
    header, and the check is repeated; with the same header before and after, a
    healthy file always holds the blocks that header points at.
    """
    path = Path(path)
    for _ in range(attempts):
        try:
            with path.open("rb") as handle:
                before = handle.read(_HEADER_BYTES)
                size = os.fstat(handle.fileno()).st_size
                handle.seek(0)
                after = handle.read(_HEADER_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        if before != after:
            time.sleep(0.05)
            continue
        pointed = _header_blocks(before)
        if pointed is not None and pointed[0] >= 0 and size < _needs(*pointed):
            return f"the file has {size:,} bytes, its header points at block {pointed[0]}"
        return None
    return None


def missing_blocks(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """Why the open database on ``con`` is truncated (a block it uses lies past the end of ``path``), or None.

    Reads only metadata: the blocks of every table's column segments
    (``pragma_storage_info``) and of the metadata itself (``pragma_metadata_info``).
    """
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    parts = ["select block_id as b from pragma_metadata_info()"]
    for schema, table in tables:
        name = ('"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"').replace("'", "''")
        parts.append(
            f"select greatest(block_id, coalesce(list_max(additional_block_ids), -1)) from "
            f"pragma_storage_info('{name}') where persistent"
        )
    highest = con.execute(f"select max(b) from ({' union all '.join(parts)})").fetchall()[0][0]
    block_size = con.execute("select block_size from pragma_database_size()").fetchall()[0][0]
    if highest is None or highest < 0:
        return None
    size = os.path.getsize(path)
    if size < _needs(int(highest), int(block_size)):
        return (
            f"the file has {size:,} bytes, but block {highest} ends at byte {_needs(int(highest), int(block_size)):,}"
        )
    return None


def check_intact(path: Path) -> None:
    """Raise ConfigError (78) when the warehouse file at ``path`` is truncated (see :func:`truncation`)."""
    detail = truncation(path)
    if detail:
        raise ConfigError(damaged_message(Path(path), detail))
