"""Benchmarks of `mallscore ingest` against DuckDB's own CSV reader, measured in the same run.

1. speed and memory: synthetic customers CSVs of BENCH_INGEST_SMALL_ROWS (default
   1,000,000) and BENCH_INGEST_LARGE_ROWS (10,000,000) rows. Each repeat runs, as
   whole processes started from a small launcher that reports the child's peak RSS,
   `mallscore ingest FILE` into a fresh warehouse and `duckdb_read_csv`: a Python
   process running DuckDB's `create table t as select * from read_csv(FILE)` into a
   fresh database file (the same file, the same disk, one after the other).
   Targets: ingest time <= 2x read_csv at the large size; peak RSS growth from the
   small to the large file <= 1.2x, and under 512 MiB at the large size.
   Every ingest here is a first load (the direct route: rows written once).
2. nights: a warehouse that holds the large file's customers gets a file of as many
   new customers (the direct route, checked against the customers already loaded),
   the large file again with every customer unchanged, and again with a tenth of
   them changed (the upsert route: old and new values compared). Each is timed
   beside read_csv of the same file; no target, the figures say what a nightly load
   costs on a warehouse of that size.
3. bad rows: BENCH_INGEST_BAD_ROWS (default 1,000,000) rows of which 1% are broken
   in known ways (bad gender, age, income, score or id, a missing field, an id on two
   lines). The rejected count must equal the clean-room count of the broken lines
   made by the generator. DuckDB's read_csv with store_rejects is timed beside it.
4. quoted: BENCH_INGEST_QUOTED_ROWS (default 1,000,000) rows whose gender is in quotes on
   every line (as exports that quote text write it), beside read_csv of the same file.

Every figure is a median over BENCH_REPEATS (default 3).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mallscore.synth import generate, write_csv  # noqa: E402

LAUNCHER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "print(done.stdout, end='')\n"
)
READ_CSV = (
    "import sys, duckdb\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "con.execute('set enable_progress_bar = false')\n"
    "options = ', store_rejects = true' if sys.argv[3] == 'rejects' else ''\n"
    "con.execute('create table t as select * from read_csv($f' + options + ')', {'f': sys.argv[2]})\n"
    "print(con.execute('select count(*) from t').fetchone()[0])\n"
    "con.close()\n"
)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def launch(args: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Run ``args`` under the launcher: (wall seconds, peak RSS bytes of the child, its stdout)."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=REPO, env=env, capture_output=True, text=True)
    first, _, out = done.stdout.partition("\n")
    code, wall, maxrss_kib = first.split()
    if int(code) != 0:
        raise SystemExit(f"{args[:4]} failed ({code}): {done.stderr.strip()[-2000:]}")
    return float(wall), int(maxrss_kib) * 1024, out


def ingest(csv_path: Path, root: Path, keep: bool = False) -> tuple[float, int, dict]:
    """``mallscore ingest`` into a fresh warehouse under ``root`` (or the one there, with ``keep``)."""
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "MALLSCORE_WAREHOUSE": str(root / "mallscore.duckdb"), "PYTHONPATH": str(REPO)}
    wall, rss, out = launch([sys.executable, "-m", "mallscore", "ingest", str(csv_path), "--json"], env)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return wall, rss, json.loads(out)


def read_csv(csv_path: Path, root: Path, mode: str = "plain") -> tuple[float, int, int]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    wall, rss, out = launch([sys.executable, "-c", READ_CSV, str(root / "t.duckdb"), str(csv_path), mode])
    shutil.rmtree(root, ignore_errors=True)
    return wall, rss, int(out)


def _with_changes(table, share: float, seed: int):
    """``table`` with the age of about ``share`` of its customers one year higher (capped at 70)."""
    import numpy as np
    import pyarrow as pa

    age = table.column("age").to_numpy()
    changed = np.random.default_rng(seed).random(len(age)) < share
    return table.set_column(
        table.schema.get_field_index("age"), "age", pa.array(np.where(changed, np.minimum(age + 1, 70), age))
    )


def bench_nights(tmp: Path, repeats: int) -> dict:
    rows = _env_int("BENCH_INGEST_LARGE_ROWS", 10_000_000)
    first, new, changed = tmp / "night_first.csv", tmp / "night_new.csv", tmp / "night_changed.csv"
    customers = generate(rows, seed=7)
    write_csv(customers, first)
    write_csv(_with_changes(customers, 0.1, seed=12), changed)
    write_csv(generate(rows, seed=11, first_id=rows + 1), new)
    del customers
    results = {}
    nights = (
        ("new customers", new, "direct"),
        ("the same customers again, unchanged", first, "upsert"),
        ("the same customers again, a tenth changed", changed, "upsert"),
    )
    for name, path, route in nights:
        ours, base = [], []
        for _ in range(repeats):
            root = tmp / "night"
            shutil.rmtree(root, ignore_errors=True)
            ingest(first, root, keep=True)  # the warehouse of the night before, rebuilt for every repeat
            wall, _, result = ingest(path, root, keep=True)
            shutil.rmtree(root, ignore_errors=True)
            assert result["route"] == route and result["rows_in_file"] == rows, result
            ours.append(wall)
            base.append(read_csv(path, tmp / "duck")[0])
        o, b = statistics.median(ours), statistics.median(base)
        print(
            f"ingest: a night of {rows:,} customers over {rows:,} loaded, {name} ({route} route; "
            f"{result['inserted']:,} inserted, {result['updated']:,} updated, {result['unchanged']:,} unchanged): "
            f"mallscore ingest {o:.2f}s vs duckdb_read_csv {b:.2f}s: ratio {o / b:.2f}",
            flush=True,
        )
        results[name] = {"route": route, "ours_s": o, "read_csv_s": b, "result": result}
    for path in (first, new, changed):
        path.unlink()
    return results


def bench_sizes(tmp: Path, repeats: int) -> dict:
    sizes = (_env_int("BENCH_INGEST_SMALL_ROWS", 1_000_000), _env_int("BENCH_INGEST_LARGE_ROWS", 10_000_000))
    results = {}
    for rows in sizes:
        path = tmp / f"customers_{rows}.csv"
        write_csv(generate(rows, seed=7), path)
        ours, base = [], []
        for _ in range(repeats):
            wall, rss, result = ingest(path, tmp / "wh")
            assert (result["rows_in_file"], result["loaded"]) == (rows, rows), result
            assert result["route"] == "direct", result
            ours.append((wall, rss))
            wall, rss, count = read_csv(path, tmp / "duck")
            assert count == rows
            base.append((wall, rss))
        path.unlink()
        o_t, o_m = statistics.median(w for w, _ in ours), statistics.median(m for _, m in ours)
        b_t, b_m = statistics.median(w for w, _ in base), statistics.median(m for _, m in base)
        print(
            f"ingest: {rows:,} rows ({path.name}): mallscore ingest {o_t:.2f}s, peak RSS {o_m / 2**20:.0f} MiB vs "
            f"duckdb_read_csv {b_t:.2f}s, {b_m / 2**20:.0f} MiB: time ratio {o_t / b_t:.2f} (target <= 2)",
            flush=True,
        )
        results[rows] = {"ours_s": o_t, "ours_rss_mib": o_m / 2**20, "read_csv_s": b_t, "read_csv_rss_mib": b_m / 2**20}
    small, large = (results[r] for r in sizes)
    growth, base_growth = (
        large["ours_rss_mib"] / small["ours_rss_mib"],
        large["read_csv_rss_mib"] / small["read_csv_rss_mib"],
    )
    print(
        f"ingest: peak RSS growth {sizes[0]:,} -> {sizes[1]:,} rows: mallscore ingest {growth:.2f}x "
        f"(target <= 1.2x; {large['ours_rss_mib']:.0f} MiB, target < 512), duckdb_read_csv {base_growth:.2f}x"
    )
    return {"sizes": results, "rss_growth": growth, "read_csv_rss_growth": base_growth}


BROKEN = (
    lambda f: [f[0], "Robot", *f[2:]],
    lambda f: [f[0], f[1], "200", *f[3:]],
    lambda f: [*f[:3], "lots", f[4]],
    lambda f: [*f[:4], "0"],
    lambda f: ["x" + f[0], *f[1:]],
    lambda f: f[:4],
)


def bad_rows_file(path: Path, rows: int) -> int:
    """A CSV with 1% broken lines; returns how many lines are broken (counted as they are made)."""
    table = generate(rows, seed=8)
    clean = path.with_suffix(".clean.csv")
    write_csv(table, clean)
    lines = clean.read_text().splitlines()
    clean.unlink()
    broken = 0
    step = 100  # 1%
    for n, i in enumerate(range(1 + step // 2, len(lines), step)):
        fields = lines[i].split(",")
        kind = n % (len(BROKEN) + 1)
        if kind == len(BROKEN):  # the id of the line before, on this line too: both lines are bad
            fields[0] = lines[i - 1].split(",")[0]
            broken += 2
        else:
            fields = BROKEN[kind](fields)
            broken += 1
        lines[i] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return broken


def bench_bad_rows(tmp: Path, repeats: int) -> dict:
    rows = _env_int("BENCH_INGEST_BAD_ROWS", 1_000_000)
    path = tmp / "bad_rows.csv"
    expected = bad_rows_file(path, rows)
    ours, base = [], []
    for _ in range(repeats):
        wall, _, result = ingest(path, tmp / "wh")
        assert result["rows_in_file"] == rows and result["rejected"] == expected, (result, expected)
        ours.append(wall)
        base.append(read_csv(path, tmp / "duck", "rejects")[0])
    o, b = statistics.median(ours), statistics.median(base)
    print(
        f"ingest: {rows:,} rows with 1% broken lines: {result['rejected']:,} rejected = {expected:,} broken lines "
        f"counted by the generator; mallscore ingest {o:.2f}s vs duckdb_read_csv with store_rejects {b:.2f}s: "
        f"ratio {o / b:.2f}"
    )
    return {"rows": rows, "rejected": result["rejected"], "expected": expected, "ours_s": o, "read_csv_s": b}


def bench_quoted(tmp: Path, repeats: int) -> dict:
    """A file that quotes its text field on every line (``1,"Male",19,15,39``, as many exports write it)."""
    rows = _env_int("BENCH_INGEST_QUOTED_ROWS", 1_000_000)
    path = tmp / "quoted.csv"
    plain = tmp / "plain.csv"
    write_csv(generate(rows, seed=9), plain)
    with plain.open() as src, path.open("w") as out:
        out.write(src.readline())
        for line in src:
            customer, gender, rest = line.split(",", 2)
            out.write(f'{customer},"{gender}",{rest}')
    plain.unlink()
    ours, base = [], []
    for _ in range(repeats):
        wall, _, result = ingest(path, tmp / "wh")
        assert (result["loaded"], result["route"]) == (rows, "direct"), result
        ours.append(wall)
        base.append(read_csv(path, tmp / "duck")[0])
    path.unlink()
    o, b = statistics.median(ours), statistics.median(base)
    print(
        f"ingest: {rows:,} rows, every gender in quotes: mallscore ingest {o:.2f}s (route {result['route']}) vs "
        f"duckdb_read_csv {b:.2f}s: ratio {o / b:.2f}"
    )
    return {"rows": rows, "ours_s": o, "read_csv_s": b}


def main() -> None:
    repeats = _env_int("BENCH_REPEATS", 3)
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="ingest-") as tmp:
        results = {
            "sizes": bench_sizes(Path(tmp), repeats),
            "nights": bench_nights(Path(tmp), repeats),
            "bad_rows": bench_bad_rows(Path(tmp), repeats),
            "quoted": bench_quoted(Path(tmp), repeats),
        }
    (out_dir / "ingest.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
