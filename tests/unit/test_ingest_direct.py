"""A CSV load parses its plain rows in the reader: new customers go straight into raw_customers (the
direct route), updates through a typed table (the upsert route). Both must write exactly what the
stage writes, and give way to the stage wherever only the stage is exact.

Every test loads the same file twice, into two fresh warehouses: once as users do
(``ingest_csv``) and once forced through the stage (``direct=False``), and compares
every row the loads wrote (customers, rejected rows with their reasons, line
numbers and raw text, the counts in ``ingest_loads``) and the route taken.
"""

from __future__ import annotations

import pytest

from mallscore import ingest
from mallscore.ingest import ingest_csv
from mallscore.warehouse import build, connect
from tests.unit.test_ingest_stream import LINES, H, _written

# The stream corpus without its ids given twice: every line kind, and a load the direct route can take.
UNIQUE = [line for line in LINES if not line.startswith(("9,Female", "10,Male"))]


def _load_both(tmp_path, text: str, *, block_bytes: int = 1 << 20, before: str | None = None):
    path = tmp_path / "c.csv"
    path.write_text(text)
    results, written = [], []
    for name, direct in (("direct", True), ("stage", False)):
        con = connect(tmp_path / f"{name}.duckdb")
        try:
            build(con)
            if before is not None:
                first = tmp_path / "first.csv"
                first.write_text(before)
                ingest_csv(con, first, direct=False)
            results.append(ingest_csv(con, path, direct=direct, block_bytes=block_bytes))
            written.append(_written(con))
        finally:
            con.close()
    assert written[0] == written[1]
    assert results[1].route == "stage"
    return results[0], written[0]


@pytest.mark.parametrize("block_bytes", [16, 97, 1 << 20])
def test_the_direct_route_writes_what_the_stage_writes(tmp_path, block_bytes):
    result, (rejected, customers, counts) = _load_both(
        tmp_path, H + "\n" + "\n".join(UNIQUE) + "\n", block_bytes=block_bytes
    )
    assert result.route == "direct"
    reasons = {line: reason for line, reason, _, _ in rejected}
    # plain rows outside the ranges were routed to the full rules, with their line numbers
    assert (
        "age 11 is outside 12..120" in reasons.values() and "spending score 101 is outside 1..100" in reasons.values()
    )
    assert counts[0][:3] == (result.rows_in_file, result.loaded, result.rejected)
    assert len(customers) == result.loaded and len(rejected) == result.rejected


def test_ids_out_of_order_load_directly(tmp_path):
    rows = [
        f"{i},{'Male' if i % 3 else 'Female'},{20 + i % 60},{i % 150},{'' if i % 7 == 0 else 1 + i % 100}"
        for i in (5, 3, 9, 1, 2, 8, 7, 4, 6)
    ]
    result, _ = _load_both(tmp_path, H + "\n" + "\n".join(rows) + "\n")
    assert result.route == "direct" and result.loaded == 9


@pytest.mark.parametrize(
    "lines",
    [
        ["1,Male,30,50,40", "2,Male,30,50,40", "1,Female,31,60,"],  # two plain lines, ids not in order
        ["1,Male,30,50,40", "2,Male,30,50,40", "2,Female,31,60,"],  # two plain lines, ids in order
        ["1,Male,30,50,40", "2,Male,30,50,40", "1,male,31,60,"],  # a plain line and one for the full rules
        ["1,Male,30,50,40", "2,Male,30,50,40", "1,Robot,31,60,"],  # and a rejected one: it still counts
        ["1,Male,30,50,40", "2,Male,30,50,40", "2,Male,30,50"],  # and one with a field missing
    ],
)
@pytest.mark.parametrize("before", [None, H + "\n1,Male,30,50,40\n"])  # the direct route; the upsert route
def test_an_id_on_two_lines_takes_the_stage(tmp_path, lines, before):
    result, (rejected, _, _) = _load_both(tmp_path, H + "\n" + "\n".join(lines) + "\n", before=before)
    assert result.route == "stage"
    assert len(rejected) >= 2


@pytest.mark.parametrize("block_bytes", [32, 1 << 20])  # the update in the first block, or only in a later one
def test_a_load_that_updates_customers_takes_the_upsert_route(tmp_path, block_bytes):
    first = H + "\n1,Male,30,50,40\n2,Female,41,70,\n"
    result, (_, customers, counts) = _load_both(
        tmp_path,
        H + "\n5,Male,50,60,20\n6,Male,50,60,20\n1,Male,30,50,40\n2,Female,42,70,\n3,Male,50,60,20\n",
        before=first,
        block_bytes=block_bytes,
    )
    assert result.route == "upsert"
    assert counts[-1][3:] == (3, 1, 1)  # inserted, updated, unchanged
    assert len(customers) == 5


def test_new_customers_over_customers_already_loaded_load_directly(tmp_path):
    first = H + "\n1,Male,30,50,40\n2,Female,41,70,\n"
    result, (_, customers, counts) = _load_both(
        tmp_path, H + "\n3,Male,30,50,40\n4,Female,42,70,\n5,male,50,60,20\n2,female,42,70,\n", before=first
    )
    assert result.route == "direct"  # the plain rows are new; the one update is a line for the full rules
    assert counts[-1][3:] == (3, 1, 0) and len(customers) == 5


def test_more_lines_for_the_full_rules_than_the_limit_take_the_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "SIDE_ROWS_LIMIT", 3)
    lines = [f"{i},male,30,50,40" for i in range(1, 8)] + [f"{i},Male,30,50,40" for i in range(8, 20)]
    result, (_, customers, _) = _load_both(tmp_path, H + "\n" + "\n".join(lines) + "\n")
    assert result.route == "stage" and len(customers) == 19


def test_a_small_side_load_stays_direct(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "SIDE_ROWS_LIMIT", 3)
    lines = [f"{i},male,30,50,40" for i in range(1, 3)] + [f"{i},Male,30,50,40" for i in range(3, 20)]
    result, (_, customers, _) = _load_both(tmp_path, H + "\n" + "\n".join(lines) + "\n")
    assert result.route == "direct" and len(customers) == 19


def test_an_empty_file_with_a_header_loads_nothing_directly(tmp_path):
    result, (rejected, customers, counts) = _load_both(tmp_path, H + "\n")
    assert (result.route, result.rows_in_file, rejected, customers) == ("direct", 0, [], [])


def _random_file(rng, rows: int, first_id: int, crlf: bool, extra: str | None) -> str:
    """Lines of every kind, ids unique and mostly increasing, in random proportions."""
    header = H + (",Note" if extra else "")
    lines, cid = [header], first_id
    for _ in range(rows):
        cid += rng.choice([1, 1, 1, 2, 7])

        def pick(good: str, odd: list[str]) -> str:
            return good if rng.random() < 0.9 else rng.choice(odd)

        gender = pick(rng.choice(["Male", "Female"]), ["male", "F", " Male", "Robot", ""])
        age = pick(str(rng.randint(12, 120)), ["11", "121", "030", "30.0", "abc", ""])
        income = pick(str(rng.randint(0, 999999)), ["0050", "1e3", "-5", "x", "999999999"])
        score = pick(rng.choice([str(rng.randint(1, 100)), ""]), ["0", "101", "040", "50.5"])
        fields = [str(cid), gender, age, income, score] + ([extra] if extra else [])
        kind = rng.random()
        if kind < 0.03:
            fields = fields[:-1]  # a field missing
        elif kind < 0.05:
            fields[1] = f'"{fields[1]}"'  # quoted
        elif kind < 0.06:
            lines.append("")  # a blank line before
        lines.append(",".join(fields))
    end = "\r\n" if crlf else "\n"
    return end.join(lines) + end


@pytest.mark.parametrize(
    "seed, loaded_before, route",
    [(0, None, "direct"), (1, None, "direct"), (2, "other ids", "direct"), (3, "other ids", "direct")]
    + [(4, "the same ids", "upsert"), (5, "the same ids", "upsert")],
)
def test_random_files_load_the_same_by_both_routes(tmp_path, seed, loaded_before, route):
    import random

    rng = random.Random(seed)
    first_id = 1000 if loaded_before == "other ids" else 0
    extra = {2: '"a, b"', 5: "note"}.get(seed)  # a quoted extra column sends every line to the full rules
    text = _random_file(rng, 400, first_id=first_id, crlf=seed % 2 == 1, extra=extra)
    before = None if loaded_before is None else _random_file(random.Random(100 + seed), 40, 0, False, None)
    if loaded_before == "the same ids":  # the file's first lines, loaded the night before
        before = "\n".join(text.splitlines()[:41]) + "\n"
    result, (rejected, customers, counts) = _load_both(
        tmp_path, text, block_bytes=rng.choice([64, 500, 1 << 20]), before=before
    )
    assert counts[-1][0] == counts[-1][1] + counts[-1][2]  # rows in = loaded + rejected
    assert result.rows_in_file == counts[-1][0] == 400 and len(rejected) >= result.rejected
    assert result.route == route and result.loaded > 250  # mostly plain rows


@pytest.mark.parametrize("chunk_rows", [1, 7, 1_000_000])  # a range per changed customer, a few, one
@pytest.mark.parametrize("direct", [True, False])  # the upsert route, the stage
def test_changed_customers_are_replaced_range_by_range(tmp_path, monkeypatch, chunk_rows, direct):
    monkeypatch.setattr(ingest, "UPSERT_CHUNK_ROWS", chunk_rows)
    ids = [5, 3, 2**62, 17, 40, 41, 9_000_000_000_000, 1, 2, 8]
    first = H + "\n" + "".join(f"{i},Male,30,50,40\n" for i in ids)
    path = tmp_path / "again.csv"
    # every other customer changed, in the plain form and (for two) in a form only the full rules read
    lines = [f"{i},{'Female' if n % 2 else 'Male'},30,50,40" for n, i in enumerate(ids)]
    lines[3], lines[5] = "17,female,30,50,40", " 41,Female,30,50,40"
    path.write_text(H + "\n" + "\n".join(lines) + "\n")
    con = connect(tmp_path / "w.duckdb")
    try:
        build(con)
        first_file = tmp_path / "first.csv"
        first_file.write_text(first)
        ingest_csv(con, first_file)
        result = ingest_csv(con, path, direct=direct)
        rows = dict(con.execute("select customer_id, gender from raw_customers").fetchall())
        assert con.execute("select count(*) from raw_customers").fetchall() == [(len(ids),)]  # one row each
    finally:
        con.close()
    assert result.route == ("upsert" if direct else "stage")
    assert (result.inserted, result.updated, result.unchanged) == (0, 5, 5)
    expected = {i: "Female" if n % 2 else "Male" for n, i in enumerate(ids)}
    assert rows == expected  # every changed customer replaced, once, whatever range its id fell in
