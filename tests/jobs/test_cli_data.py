"""The data commands end to end through a real subprocess and a real warehouse file."""

import json

PUBLIC = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"


def test_ingest_json_and_human_output(cli, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(f"{PUBLIC}\n1,Male,30,50,40\n2,Female,40,60,\nx,Male,1,2,3\n")
    out = cli("ingest", path, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {k: data[k] for k in ("rows_in_file", "loaded", "rejected")} == {
        "rows_in_file": 3,
        "loaded": 2,
        "rejected": 1,
    }
    assert data["load_id"].startswith("L")
    human = cli("ingest", path)
    assert "3 rows in file = 2 loaded + 1 rejected" in human.stdout


def test_whole_file_failures_exit_codes_one_line_no_traceback(cli, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    missing_col = tmp_path / "m.csv"
    missing_col.write_text("CustomerID,Gender,Age\n1,Male,30\n")
    for args, code in (
        [("ingest", tmp_path / "nope.csv"), 66],
        [("ingest", empty), 65],
        [("ingest", missing_col), 65],
        [("ingest",), 2],
        [("synth", "--rows", "-5"), 2],
    ):
        out = cli(*args)
        assert out.returncode == code, (args, out.returncode, out.stderr)
        assert "Traceback" not in out.stderr
        if code != 2:
            assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("mallscore: ")


def test_synth_features_status_and_demo(cli, tmp_path):
    assert cli("synth", "--rows", "300", "--seed", "5").returncode == 0
    assert cli("synth", "--rows", "100", "--new").returncode == 0
    feats = json.loads(cli("features", "--json").stdout)
    assert feats["relations"]["features_customer"] == 400
    assert feats["labels"]["rows"] == 300 and 100 < feats["labels"]["positives"] < 200
    status = json.loads(cli("status", "--json").stdout)
    assert status["relations"]["raw_customers"] == 400 and len(status["recent_loads"]) == 2
    csv_path = tmp_path / "s.csv"
    assert cli("synth", "--rows", "10", "--csv", csv_path).returncode == 0
    assert csv_path.read_text().splitlines()[0] == PUBLIC
    # the synthetic CSV loads back through ingest
    assert json.loads(cli("ingest", csv_path, "--json").stdout)["loaded"] == 10


def test_global_options_override_environment(cli, tmp_path):
    other = tmp_path / "other.duckdb"
    assert cli("--warehouse", other, "synth", "--rows", "5").returncode == 0
    assert other.exists()
    assert json.loads(cli("--warehouse", other, "features", "--json").stdout)["relations"]["raw_customers"] == 5


def test_locked_warehouse_exits_75_naming_the_holder(cli, settings):
    import subprocess
    import sys

    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(settings.warehouse)!r}); print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        out = cli("synth", "--rows", "5", env={"MALLSCORE_LOCK_TIMEOUT": "1"})
        assert holder.poll() is None  # it gave up while the lock was still held, not after the holder let go
        assert out.returncode == 75
        assert f"PID {holder.pid}" in out.stderr and "locked" in out.stderr
    finally:
        holder.kill()
        holder.wait()
