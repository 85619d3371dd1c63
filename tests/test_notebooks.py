"""Every notebook runs from top to bottom without an error (outputs are not committed),
draws at least one chart, and prints the numbers its lesson rests on; those are checked here."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _line(text: str, prefix: str) -> str:
    """The first printed line starting with ``prefix``."""
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    assert found, f"no line starting with {prefix!r} was printed"
    return found[0]


def _seconds(line: str, after: str) -> float:
    """The number (in s) printed right after ``after`` in ``line``."""
    match = re.search(re.escape(after) + r"\s*([-+]?[0-9.]+)", line)
    assert match, f"{after!r} not followed by a number in {line!r}"
    return float(match.group(1))


def check_01(text: str) -> None:
    # the cold run pulls 21.2 MB over 100 Mbit/s: more than 1.7 s; the warm one does not pull
    first, second = [line for line in text.splitlines() if line.startswith("run #")]
    assert float(first.split("pull ")[1].split(" s")[0]) > 1.7
    assert second.startswith("run #2: pull 0.000 s")
    # one image, three containers: only the first run pulls
    assert _line(text, "containers: ") == "containers: 3, pulls: 1"
    assert _line(text, "container #3: ").startswith("container #3: pull 0.000 s")


def check_02(text: str) -> None:
    # six layers, three download slots: never more than three downloads at once
    assert _line(text, "downloads in flight at once") == "downloads in flight at once, at most: 3"
    # the biggest layer on the wire (l4, 13.3 MB) is on the critical path
    assert _line(text, "biggest layer on the wire:") == "biggest layer on the wire: l4"
    assert "l4" in _line(text, "downloads on the critical path:").split(":")[1].replace(" ", "").split(",")
    # doubling it costs far more than doubling the smallest layer (l3)
    base = _seconds(_line(text, "pull as written:"), "written:")
    big = _seconds(_line(text, "biggest layer (l4) doubled:"), "doubled:")
    small = _seconds(_line(text, "smallest layer (l3) doubled:"), "doubled:")
    assert big - base > 5 * (small - base) > 0
    assert big - base > 0.4      # about 13 MB more at 200 Mbit/s


def check_03(text: str) -> None:
    # the second image shares debian: only the worker layer (6 MB / 1.2 = 5 MB) is downloaded
    assert _line(text, "step 1: downloaded") == "step 1: downloaded   5.00 MB, layers worker"
    assert _line(text, "step 0: downloaded") == "step 0: downloaded  22.00 MB, layers api, debian"
    cold, shared, warm = (_seconds(_line(text, name), "takes") for name in ("cold", "shared base", "warm"))
    assert cold > shared > warm > 0
    assert warm < 0.1
    # a bigger cache never lowers the hit ratio, and the largest beats the smallest clearly
    ratios = [float(m) for m in re.findall(r"^cache +\d+ MB: hit ratio ([0-9.]+)%", text, re.M)]
    assert len(ratios) >= 4
    assert ratios == sorted(ratios) and ratios[-1] > ratios[0] + 10
    starts = [float(m) for m in re.findall(r"(\d+(?:\.\d+)?) s", _line(text, "4 points; mean startup_s")
                                              .split(":", 1)[1])]
    assert starts[0] > starts[-1]


def check_04(text: str) -> None:
    registry = _line(text, "registry N=")
    mirror = _line(text, "mirror   N=")
    # up to 20 nodes the 4 Gbit/s uplink feeds everyone at 200 Mbit/s: 200 MB in 8 s
    assert _seconds(registry, "N=5:") == pytest.approx(8.0, abs=0.2)
    # at 80 nodes it is shared: 80 x 200 MB x 8 / 4000 Mbit/s = 32 s
    assert _seconds(registry, "N=80:") == pytest.approx(32.0, rel=0.05)
    # the mirror is flat, and P2P stays near 8 s whatever N
    assert _seconds(mirror, "N=5:") == pytest.approx(_seconds(mirror, "N=80:"), rel=0.05)
    last = _line(text, "last node done at N=80")
    assert _seconds(last, "p2p") < 12.0 < _seconds(last, "registry")
    p2p = _line(text, "p2p      first node done")
    assert _seconds(p2p, "last") < 12.0


def check_05(text: str) -> None:
    # in fast mode the committed trace is read; nothing is measured inside the notebook
    assert _line(text, "not measuring").startswith("not measuring (fast mode")
    # the error table: three metrics for each of the two runs
    table = re.findall(r"^ +0 +0 +[01]  (pull_s|startup_s|total_s) ", text, re.M)
    assert len(table) == 6
    # the model with the built-in costs is close to the committed measurement of the cold run
    assert abs(_seconds(_line(text, "cold run total_s error:"), "error:")) < 15.0
    # a model that believes the link is half as fast is far off
    assert _seconds(_line(text, "model believes 50 Mbit/s"), "cold run error") > 50.0


CHECKS = {"01": check_01, "02": check_02, "03": check_03, "04": check_04, "05": check_05}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("DOCKSIM_FAST", "1")
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        f"{path.name} is committed with outputs"
    assert all(cell.get("execution_count") is None for cell in notebook.cells if cell.cell_type == "code"), \
        f"{path.name} is committed with execution counts"
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.outputs)
    CHECKS[path.name[:2]](text)
    images = [out for cell in notebook.cells if cell.cell_type == "code"
              for out in cell.outputs if "image/png" in out.get("data", {})]
    assert images, "the notebook drew no chart"
    source = "".join(cell.source for cell in notebook.cells)
    assert "widgets.interactive(" in source, "the notebook has no interactive controls"
    last = notebook.cells[-1]
    assert last.cell_type == "markdown" and "Exercises" in last.source, "the notebook ends without exercises"


def test_every_notebook_is_checked():
    assert sorted(path.name[:2] for path in NOTEBOOKS) == sorted(CHECKS)
