"""Sweeps: the grid, the seeds, every executor giving the same table, resume, failures, the CLI."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import model
from sweep.executors import DaskExecutor, ProcessExecutor, SerialExecutor
from sweep.grid import grid_points, point_id, point_seed
from sweep.metrics import METRICS, quantile, replication_metrics
from sweep.progress import ProgressBar
from sweep.results import JOURNAL, read_journal, read_results
from sweep.runner import plan_sweep, run_sweep
from vocab.scenario import load_scenario
from vocab.trace import read_csv, request_metrics

PROJECT = Path(__file__).resolve().parent.parent
HELLO = PROJECT / "scenarios" / "hello.toml"
GRID = {"network.bandwidth_mbps": [10, 100, 1000], "step.clients": [1, 3]}

# One pull of one incompressible 10 MB layer with no round-trip time: its
# download is the registry's fixed time plus 10e6 * 8 / (bandwidth_mbps * 1e6) s.
TRANSFER = """
[scenario]
name = "transfer"

[network]
bandwidth_mbps = 40
rtt_ms = 0

[[image]]
ref = "t:1"
layers = [{ name = "blob", size_mb = 10.0, compression = 1.0 }]

[[step]]
command = "pull"
image = "t:1"
"""

CALLS: list[float] = []


def counting_simulate(scenario, seed=None, costs=None):
    """model.simulate, remembering each call (serial executor: same process)."""
    CALLS.append(scenario.network.bandwidth_mbps)
    return model.simulate(scenario, seed=seed, costs=costs)


def failing_simulate(scenario, seed=None, costs=None):
    """model.simulate, except that 100 Mbit/s breaks the model."""
    if scenario.network.bandwidth_mbps == 100:
        raise ZeroDivisionError("the model broke at 100 Mbit/s")
    return model.simulate(scenario, seed=seed, costs=costs)


def interrupting_simulate(scenario, seed=None, costs=None):
    """model.simulate until the 1000 Mbit/s points: there, as if Ctrl-C was pressed."""
    if scenario.network.bandwidth_mbps == 1000:
        raise KeyboardInterrupt
    return model.simulate(scenario, seed=seed, costs=costs)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT / "simulate.py"), *args],
                          capture_output=True, text=True, cwd=PROJECT, timeout=300)


def test_grid_points_ids_and_seeds():
    points = grid_points(GRID)
    assert points[:3] == [{"network.bandwidth_mbps": 10, "step.clients": 1},
                          {"network.bandwidth_mbps": 10, "step.clients": 3},
                          {"network.bandwidth_mbps": 100, "step.clients": 1}]
    assert len(points) == 6 and len({point_id(p) for p in points}) == 6
    # the seed depends on what the point is, not on the order of its keys
    swapped = {"step.clients": 1, "network.bandwidth_mbps": 10}
    assert point_id(swapped) == point_id(points[0])
    assert point_seed(1, swapped, 0) == point_seed(1, points[0], 0)
    seeds = {point_seed(s, p, r) for s in (1, 2) for p in points for r in range(3)}
    assert len(seeds) == 36 and all(0 <= seed < 2**63 for seed in seeds)
    assert point_seed(1, points[0], 0) == 9131042061886929061  # the documented rule, pinned


def test_metrics_of_one_replication():
    assert quantile([1.0, 2.0], 0.95) == pytest.approx(1.95)
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    rows = model.simulate(dataclasses.replace(load_scenario(HELLO), replications=1))
    metrics = replication_metrics(rows)
    assert list(metrics) == list(METRICS)
    totals = [entry["total_s"] for entry in request_metrics(rows).values()]
    assert metrics["total_s_median"] == pytest.approx(statistics.median(totals))
    assert metrics["total_s_mean"] == pytest.approx(statistics.mean(totals))
    assert metrics["makespan_s"] == max(row.end_s for row in rows)
    assert metrics["requests"] == 2.0 and metrics["pull_s_p95"] > 1.7 * 0.95


def _sweep(out: Path, executor, simulate=None, grid=GRID, replications=2):
    plan = plan_sweep(HELLO, grid, replications, simulate=simulate)
    return run_sweep(plan, out, executor)


def test_every_executor_gives_the_same_results(tmp_path):
    serial = _sweep(tmp_path / "serial", SerialExecutor())
    assert serial.ran == 6 and not serial.failed
    _sweep(tmp_path / "processes", ProcessExecutor(2))
    _sweep(tmp_path / "dask", DaskExecutor("local", 2, processes=False))
    reference = (tmp_path / "serial" / "results.csv").read_bytes()
    for name in ("processes", "dask"):
        assert (tmp_path / name / "results.csv").read_bytes() == reference, name
    rows, sidecar = read_results(tmp_path / "serial")
    assert len(rows) == 6 * 2 * len(METRICS)
    assert list(rows[0]) == ["point", "network.bandwidth_mbps", "step.clients", "replication",
                             "seed", "metric", "value"]
    assert sidecar["grid"] == GRID and sidecar["status"]["complete"]
    assert sidecar["versions"]["dask"] and "sha256" in sidecar["seed_rule"]
    # one seed per point and replication, as the rule says
    for row in rows:
        point = {k: row[k] for k in GRID}
        assert row["seed"] == point_seed(1, point, row["replication"])
    # the slower link takes longer: the table means what it says
    medians = {r["network.bandwidth_mbps"]: r["value"] for r in rows
               if r["metric"] == "pull_s_p95" and r["step.clients"] == 1 and r["replication"] == 0}
    assert medians[10] > medians[100] > medians[1000]


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_start_method_of_the_pool_gives_the_same_results(tmp_path, monkeypatch, method):
    """fork is used from a single-threaded process; forkserver (or spawn) elsewhere."""
    monkeypatch.setattr(ProcessExecutor, "start_method", staticmethod(lambda: method))
    _sweep(tmp_path / method, ProcessExecutor(2), grid={"network.rtt_ms": [0, 7]})
    _sweep(tmp_path / "serial", SerialExecutor(), grid={"network.rtt_ms": [0, 7]})
    assert (tmp_path / method / "results.csv").read_bytes() == \
        (tmp_path / "serial" / "results.csv").read_bytes()


def test_a_dask_cluster_by_its_address(tmp_path):
    """--scheduler tcp://HOST:PORT: a cluster started elsewhere (here: in this process)."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        _sweep(tmp_path / "remote", DaskExecutor(cluster.scheduler_address))
    _sweep(tmp_path / "serial", SerialExecutor())
    assert (tmp_path / "remote" / "results.csv").read_bytes() == \
        (tmp_path / "serial" / "results.csv").read_bytes()


def test_resume_runs_only_what_is_missing(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        _sweep(out, SerialExecutor(), interrupting_simulate)
    # the directory is consistent: the 4 finished points are in the table
    rows, sidecar = read_results(out)
    assert {r["network.bandwidth_mbps"] for r in rows} == {10, 100}
    assert sidecar["status"]["interrupted"] and not sidecar["status"]["complete"]
    assert sidecar["status"]["done"] == 4
    # a kill mid-write leaves a torn last line: it is dropped, not read
    with open(out / JOURNAL, "ab") as journal:
        journal.write(b'{"point": "torn')
    CALLS.clear()
    report = _sweep(out, SerialExecutor(), counting_simulate)
    assert (report.skipped, report.ran) == (4, 2)
    assert CALLS == [1000.0] * 4  # two points x two replications, nothing else
    assert all(line.endswith("}") for line in (out / JOURNAL).read_text().splitlines())
    CALLS.clear()
    again = _sweep(out, SerialExecutor(), counting_simulate)
    assert (again.skipped, again.ran, CALLS) == (6, 0, [])
    fresh = tmp_path / "fresh"
    _sweep(fresh, SerialExecutor())
    assert (out / "results.csv").read_bytes() == (fresh / "results.csv").read_bytes()


@pytest.mark.parametrize("executor", [SerialExecutor, lambda: ProcessExecutor(2)],
                         ids=["serial", "processes"])
def test_a_failing_point_is_reported_and_the_others_finish(tmp_path, executor):
    out = tmp_path / "sweep"
    report = _sweep(out, executor(), failing_simulate)
    assert report.ran == 6 and len(report.failed) == 2
    assert {json.dumps(f["params"], sort_keys=True) for f in report.failed} == {
        json.dumps({"network.bandwidth_mbps": 100, "step.clients": c}, sort_keys=True) for c in (1, 3)}
    assert all("ZeroDivisionError: the model broke" in f["error"] for f in report.failed)
    rows, sidecar = read_results(out)
    assert {r["network.bandwidth_mbps"] for r in rows} == {10, 1000}
    assert len(sidecar["status"]["failed"]) == 2 and not sidecar["status"]["complete"]
    # a rerun retries only the failed points
    CALLS.clear()
    again = _sweep(out, SerialExecutor(), counting_simulate)
    assert (again.skipped, again.ran, again.failed) == (4, 2, [])
    assert CALLS == [100.0] * 4


def test_cli_sweep_failure_exit_status_and_line(tmp_path, monkeypatch, capsys):
    import simulate
    import sweep.worker
    monkeypatch.setattr(sweep.worker, "_model_simulate", lambda: failing_simulate)
    status = simulate.main(["sweep", str(HELLO), "--set", "network.bandwidth_mbps=10,100",
                            "--out", str(tmp_path / "s"), "--scheduler", "serial",
                            "--replications", "1", "--calibration", "builtin"])
    assert status == 1
    err = capsys.readouterr().err
    assert "point network.bandwidth_mbps=100 failed: ZeroDivisionError" in err
    assert len(read_results(tmp_path / "s")[0]) == len(METRICS)


@pytest.mark.parametrize("option, line", [
    ("network.bandwidth_mbpx=10,100", "--set network.bandwidth_mbpx=10: unknown key"),
    ("network.bandwidth_mbps=10,0", "--set network.bandwidth_mbps=0: must be greater than 0"),
    ("step[1].clients=1,2", "--set step[1].clients: there are only 1 [[step]] entries"),
    ("step.clients=1,two", "--set step.clients=two: must be an integer, not 'two'"),
])
def test_cli_wrong_key_or_value_exits_2_before_anything_runs(tmp_path, option, line):
    out = tmp_path / "sweep"
    result = cli("sweep", str(HELLO), "--set", "network.rtt_ms=0,10", "--set", option,
                 "--out", str(out), "--calibration", "builtin")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"docksim: {line}"), result.stderr
    assert not out.exists()


def test_cli_sweep_writes_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    args = ("sweep", str(HELLO), "--set", "network.bandwidth_mbps=50,100", "--set",
            "step.repeat=1,2", "--replications", "2", "--workers", "2", "--out", str(out),
            "--calibration", "builtin")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "4 points" in first.stdout and "0 already done, 4 run, 0 failed" in first.stdout
    table = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert len(table) == 4 * 2 * len(METRICS)
    second = cli(*args)
    assert second.returncode == 0 and "4 already done, 0 run" in second.stdout
    other = cli("sweep", str(HELLO), "--set", "network.rtt_ms=1", "--out", str(out),
                "--calibration", "builtin")
    assert other.returncode == 2 and "holds another sweep" in other.stderr


def test_run_set_doubling_bandwidth_halves_a_pure_transfer(tmp_path):
    scenario = tmp_path / "transfer.toml"
    scenario.write_text(TRANSFER)
    downloads = {}
    for mbps in (40, 80):
        out = tmp_path / f"bw{mbps}"
        result = cli("run", str(scenario), "--set", f"network.bandwidth_mbps={mbps}",
                     "--calibration", "builtin", "--out", str(out))
        assert result.returncode == 0, result.stderr
        [row] = [r for r in read_csv(out / "trace.csv") if r.phase == "download"]
        downloads[mbps] = row.duration_s
        summary = json.loads((out / "summary.json").read_text())
        assert summary["meta"]["seed"] == 0
    # a blob GET is the registry's fixed time per request plus the transfer
    transfer = {mbps: d - model.Costs().registry_request_s for mbps, d in downloads.items()}
    assert transfer[40] == pytest.approx(10e6 * 8 / 40e6, abs=2e-6)  # 2 s on the wire
    assert transfer[80] == pytest.approx(transfer[40] / 2, abs=2e-6)
    bad = cli("run", str(scenario), "--set", "network.bandwidth_mbps=40,80", "--out",
              str(tmp_path / "x"))
    assert bad.returncode == 2 and "takes one value" in bad.stderr


def test_progress_bar_in_a_terminal_shows_done_rate_and_time_left(tmp_path, capsys):
    bar = ProgressBar(enabled=True, description="hello")
    report = run_sweep(plan_sweep(HELLO, {"network.rtt_ms": [0, 5, 10]}, 1), tmp_path / "s",
                       SerialExecutor(), bar)
    assert report.ran == 3
    err = capsys.readouterr().err
    assert "hello: 100%" in err and "3/3" in err and "point/s" in err and "<00:00" in err
    assert ProgressBar(enabled=None).enabled is False  # no terminal here, no Jupyter


def test_progress_bar_in_jupyter(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    code = (f"import sys; sys.path.insert(0, {str(PROJECT)!r})\n"
            "from sweep import sweep\n"
            f"report = sweep({str(HELLO)!r}, {{'network.rtt_ms': [0, 5]}}, {str(tmp_path / 's')!r}, "
            "replications=1, workers=2)\n"
            "print('ran', report.ran)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    text = "".join(out.get("text", "") for out in outputs)
    widgets = [out for out in outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert "ran 2" in text
    assert widgets or "2/2" in text  # a widget with ipywidgets, else tqdm's text bar


def test_parquet_is_written_when_pyarrow_is_there(tmp_path, monkeypatch):
    """pyarrow is not a dependency: a stand-in checks the columns it would get."""
    import types
    written = {}
    fake = types.ModuleType("pyarrow")
    fake.array = lambda values: list(values)
    fake.table = lambda columns: columns
    fake.parquet = types.ModuleType("pyarrow.parquet")

    def write_table(table, path):
        written.update(table)
        Path(path).write_bytes(b"PAR1")
    fake.parquet.write_table = write_table
    monkeypatch.setitem(sys.modules, "pyarrow", fake)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", fake.parquet)
    report = _sweep(tmp_path / "s", SerialExecutor(), grid={"network.bandwidth_mbps": [10, 2.5]},
                    replications=1)
    assert (tmp_path / "s" / "results.parquet").read_bytes() == b"PAR1"
    assert tmp_path / "s" / "results.parquet" in report.files
    assert written["network.bandwidth_mbps"][0] == 10.0  # one type per column: floats
    assert all(isinstance(v, float) for v in written["network.bandwidth_mbps"])
    assert written["metric"][0] == "total_s_median" and isinstance(written["value"][0], float)


def test_journal_keeps_the_last_record_of_a_point(tmp_path):
    (tmp_path / JOURNAL).write_text('{"point": "a", "status": "failed"}\n'
                                    '{"point": "a", "status": "ok"}\n{"point": "b"')
    assert read_journal(tmp_path) == {"a": {"point": "a", "status": "ok"}}
