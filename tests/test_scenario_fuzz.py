"""Random scenario files (hypothesis) through `simulate.py run`: each one either runs
(exit 0, every output written) or is refused with exit 2 and exactly one line on
stderr that names the file, never a traceback.

The documents (tests/scenario_documents.py) are drawn around the real schema:
valid ones with a few mutations, and wild ones of any keys, values and nesting.
Numbers that scale the work are small, or else far too big: those must be
refused (vocab.limits), not computed for hours.  Then the real command line as a
subprocess for a few documents, and the work ceilings one by one.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings

import simulate
from tests.scenario_documents import documents, to_toml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("DOCKSIM_FUZZ_EXAMPLES", "150"))  # more for a long local hunt
RUN_LIMIT_S = 20  # one document that runs longer than this is a failure of its own
OUTPUTS = ("trace.csv", "summary.json", "timeline.png", "timeline.svg")


# -- running the CLI ------------------------------------------------------------------------------

def _too_long(*_):
    raise TimeoutError(f"one scenario ran longer than {RUN_LIMIT_S} s")


def run_in_process(text: str) -> tuple[str, int, str, Path, Path]:
    """`simulate.py run FILE --out DIR` through its main(): (outcome, status, stderr, file, out)."""
    work = Path(tempfile.mkdtemp(prefix="docksim-fuzz-"))
    path, out = work / "fuzzed.toml", work / "out"
    path.write_text(text, encoding="utf-8")
    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(RUN_LIMIT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                status = simulate.main(["run", str(path), "--out", str(out), "--calibration", "builtin"])
            except SystemExit as exc:  # argparse; anything else escaping is a bug
                status = exc.code
        return ("ran" if status == 0 else "refused"), status, err.getvalue(), path, out
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_outcome(text: str) -> str:
    work = None
    try:
        outcome, status, stderr, path, out = run_in_process(text)
        work = path.parent
        assert "Traceback" not in stderr, stderr
        if status == 0:
            missing = [name for name in OUTPUTS if not (out / name).is_file()]
            assert not missing, f"exit 0 but {missing} not written"
            requests = json.loads((out / "summary.json").read_text())["requests"]
            trace_lines = (out / "trace.csv").read_text().count("\n")
            assert (trace_lines > 1) == bool(requests), (trace_lines, requests)  # both or neither
        else:
            lines = stderr.rstrip("\n").split("\n")
            assert status == 2, f"exit {status}: {stderr!r}"
            assert len(lines) == 1 and lines[0], f"not one line: {stderr!r}"
            assert str(path) in lines[0], f"the file is not named: {lines[0]!r}"
        return outcome
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def test_random_scenarios_run_or_fail_in_one_line() -> None:
    counts: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(documents)
    def one(doc) -> None:
        counts[check_outcome(to_toml(doc))] += 1

    one()
    total = sum(counts.values())
    print(f"\nrandom scenarios: {counts['ran']} ran, {counts['refused']} refused with one line, "
          f"0 tracebacks, of {total} documents")
    assert counts["ran"] >= 5 and counts["refused"] >= 5, counts


HELLO = (REPO / "scenarios" / "hello.toml").read_text()


def test_as_a_subprocess_one_line_or_outputs(tmp_path) -> None:
    """The real command line, for four documents: valid, not TOML, not UTF-8, a bad value."""
    cases = {"valid": (HELLO.encode(), 0), "not toml": (b"[scenario\nname = ", 2),
             "not utf-8": (b"[scenario]\nname = \"\xff\xfe\"\n", 2),
             "bad value": (HELLO.replace("clients = 1", "clients = -3").encode(), 2)}
    for name, (data, expected) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.toml"
        path.write_bytes(data)
        done = subprocess.run([sys.executable, str(REPO / "simulate.py"), "run", str(path), "--out",
                               str(tmp_path / name.replace(" ", "-")), "--calibration", "builtin"],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.returncode == expected, (name, done.stderr)
        assert "Traceback" not in done.stderr
        if expected:
            assert done.stderr.count("\n") == 1 and str(path) in done.stderr, done.stderr
        else:
            assert (tmp_path / "valid" / "trace.csv").is_file()


BASE = """[scenario]
name = "big"
{scenario}
{tables}
[[image]]
ref = "lecture/hello:1"
layers = [{{ name = "app", size_mb = {size_mb} }}]

[[step]]
command = "run"
image = "lecture/hello:1"
{step}
"""

EXTREMES = {  # what the file says -> the key path and the words of the refusal
    "ten million clients": (dict(step="clients = 10_000_000"), "step[0]", "asks for 1e+07 requests"),
    "repeats times replications": (dict(step="repeat = 2000", scenario="replications = 1000"),
                                   "step[0]", "asks for 2e+06 requests"),
    "endless poisson": (dict(step='arrivals = "poisson"\nrate_per_s = 1.0\nduration_s = 1e300'),
                        "step[0]", "asks for 1e+300 requests"),
    "a billion nodes": (dict(tables='[[node]]\nname = "n"\ncount = 1_000_000_000'), "node[0].count",
                        "at most 100,000"),
    "nodes over several groups": (dict(tables="".join(f'[[node]]\nname = "g{i}"\ncount = 60000\n'
                                                      for i in range(2)), step='node = "g0-1"'),
                                  "node[1].count", "more than 100,000 nodes in all"),
    "a million replications": (dict(scenario="replications = 1_000_000"), "scenario.replications",
                               "at most 10,000"),
    "a billion catalog images": (dict(tables="[catalog]\nimages = 1_000_000_000"), "catalog.images",
                                 "at most 100,000"),
    "a petabyte layer": (dict(size_mb="1e9"), "image[0].layers[0].size_mb", "at most 1,000,000"),
    "dust-sized pieces": (dict(tables='[distribution]\nmode = "p2p"\npiece_mb = 1e-9'),
                          "distribution.piece_mb", "pieces; at most 10,000"),
}


def test_work_past_the_ceilings_is_refused_at_once() -> None:
    """Each of these would compute for hours or exhaust memory; each is one line."""
    refused = 0
    for name, (parts, path, words) in EXTREMES.items():
        text = BASE.format(**{"scenario": "", "tables": "", "step": "", "size_mb": "1.0", **parts})
        started = time.monotonic()
        outcome, status, stderr, file, _ = run_in_process(text)
        shutil.rmtree(file.parent, ignore_errors=True)
        assert status == 2 and stderr.count("\n") == 1, (name, stderr)
        assert f"{file}: {path}: " in stderr and words in stderr, (name, stderr)
        assert time.monotonic() - started < 2.0, name
        refused += 1
    print(f"\nscenarios past the work ceilings refused in one line: {refused}/{len(EXTREMES)}")
