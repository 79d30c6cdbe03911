"""Run every benchmark in bench/ (``bench_*.py``, each with a ``main()``) and print its ratios.

    python bench/run.py                 # full sizes (what `make bench` runs)
    python bench/run.py --quick         # small sizes, one repeat: a smoke run in seconds
    python bench/run.py scoring synth   # only the named benchmarks

Sizes and repeats come from environment variables documented in each module
(BENCH_REPEATS for all); --quick only sets defaults for the ones not already set.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "BENCH_REPEATS": "1",
    "BENCH_SYNTH_ROWS": "1000000",
    "BENCH_SCORE_ROWS": "1000000",
    "BENCH_MEMORY_SMALL_ROWS": "200000",
    "BENCH_MEMORY_LARGE_ROWS": "1000000",
    "BENCH_NOTEBOOK_ROWS": "20000",
    "BENCH_RESCORE_REPEATS": "3",
    "BENCH_TRAIN_BUDGET": "quick",
    "BENCH_PUBLISH_ROWS": "100000",
    "BENCH_INGEST_SMALL_ROWS": "100000",
    "BENCH_INGEST_LARGE_ROWS": "1000000",
    "BENCH_INGEST_BAD_ROWS": "100000",
    "BENCH_SNAPSHOT_ROWS": "200000",
    "BENCH_EXPORT_ROWS": "1000000",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (bench_<name>.py); default all")
    parser.add_argument("--quick", action="store_true", help="small sizes and one repeat")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            os.environ.setdefault(key, value)
    modules = sorted(HERE.glob("bench_*.py"))
    if args.names:
        wanted = {f"bench_{n}.py" for n in args.names}
        unknown = wanted - {m.name for m in modules}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        modules = [m for m in modules if m.name in wanted]
    for path in modules:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        started = time.perf_counter()
        print(f"== {path.stem} ==", flush=True)
        sys.argv = [str(path)]  # each benchmark parses its own (empty) command line; sizes come from BENCH_*
        module.main()
        print(f"   ({time.perf_counter() - started:.0f}s)", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
