"""The chart kinds of ``simulate.py chart``: each drawn from a real trace, checked for content.

The traces come from the model run on the shipped scenarios (hello,
three-clients, shared-base) and written as result directories.  Where a kind
needs a measured trace too, a stand-in is made from the simulated one
(source ``real``, times stretched): these tests check the drawing, not the
engine.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest
from matplotlib.patches import FancyArrowPatch
from PIL import Image

from analysis import chart_kinds
from analysis.animation import animate_pull
from analysis.breakdown_chart import BREAKDOWN, breakdown_figure, breakdown_s
from analysis.cdf_chart import cdf_figure
from analysis.engines_chart import engines_figure
from analysis.gantt_chart import gantt_figure
from analysis.pulls import critical_path, phase_row, pull_layer_rows
from analysis.report import write_trace_dir
from analysis.select import by_request, request_total_s
from analysis.sequence_calls import derive_sequence
from analysis.sequence_chart import LABEL_GID, sequence_figure
from analysis.style import save_figure, tag_of
from analysis.topology_chart import EDGE_LABEL_GID, build_topology, topology_figure
from analysis.traffic import link_flows, link_loads, rate_at_Bps
from model.costs import Costs
from model.simulation import simulate
from vocab.scenario import load_scenario, parse_scenario
from vocab.trace import PhaseRow, request_metrics

ROOT = Path(__file__).resolve().parent.parent
COSTS = Costs()

CLUSTER = """
[scenario]
name = "cluster-test"
[network]
bandwidth_mbps = 100
rtt_ms = 20
registry_bandwidth_mbps = 200
[distribution]
mode = "mirror"
mirror_bandwidth_mbps = 1000
[[node]]
name = "worker"
count = 4
[[image]]
ref = "lecture/web:2"
layers = [{ name = "os", size_mb = 8.0, compression = 2.0 },
          { name = "site", size_mb = 2.0 }]
[[step]]
command = "pull"
image = "lecture/web:2"
node = "worker-*"
"""


def _trace_dir(root: Path, name: str) -> tuple[Path, list[PhaseRow], object]:
    path = ROOT / "scenarios" / f"{name}.toml"
    scenario = load_scenario(path)
    rows = simulate(scenario, costs=COSTS)
    out = root / name
    write_trace_dir(rows, out, scenario, "sim", "model",
                    {"scenario_file": str(path), "costs": dataclasses.asdict(COSTS)})
    return out, rows, scenario


def as_measured(rows: list[PhaseRow], engine: str = "launcher", k: float = 1.1) -> list[PhaseRow]:
    """A stand-in measured trace: the same rows, source ``real``, every time times k."""
    return [dataclasses.replace(r, source="real", engine=engine, start_s=round(r.start_s * k, 6),
                                end_s=round(r.end_s * k, 6)) for r in rows]


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    root = tmp_path_factory.mktemp("charts")
    found = {name: _trace_dir(root, name) for name in ("hello", "three-clients", "shared-base")}
    hello_dir, hello_rows, scenario = found["hello"]
    compare = root / "hello-compare"   # laid out as `compare` writes it
    for sub, rows, engine in (("sim", hello_rows, "model"),
                              ("real", as_measured(hello_rows), "launcher")):
        write_trace_dir(rows, compare / sub, scenario, rows[0].source, engine,
                        {"scenario_file": str(ROOT / "scenarios" / "hello.toml")})
    docker = root / "hello-docker"
    write_trace_dir(as_measured(hello_rows, "docker", 1.3), docker, scenario, "real", "docker", {})
    found["compare"], found["docker"] = (compare, None, scenario), (docker, None, scenario)
    return found


def labels(ax, gid: str) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == gid]


# -- sequence ---------------------------------------------------------------------------------
def test_sequence_of_a_cold_run_shows_the_404_the_pull_and_every_registry_request(traces):
    _, rows, _ = traces["hello"]
    request, messages, boxes = derive_sequence(rows)
    assert request == "s0-c0-r0"   # the default: the first run that pulled
    calls = [m.label for m in messages if m.kind == "call"]
    assert calls[:3] == ["POST /containers/create", "POST /images/create (the pull)",
                         "GET /images/lecture/hello:1/json"]
    assert calls[3:] == ["POST /containers/create", "GET /containers/{id}/json",
                         "POST /containers/{id}/start", "GET /containers/{id}/logs",
                         "GET /containers/{id}/json", "POST /containers/{id}/wait",
                         "DELETE /containers/{id}"]
    assert [m.note for m in messages if m.kind == "answer"][0] == "404 no such image"
    http = [m.label for m in messages if m.kind == "http"]
    assert http == ["GET /v2/", "GET /v2/lecture/hello/manifests/1", "GET blob config",
                    "GET blob base", "GET blob app"]   # 3 resolve requests + one per layer

    fig = sequence_figure(rows)
    drawn = labels(fig.axes[0], LABEL_GID)
    for label in calls + http + ["\u2190 404 no such image"]:
        assert label in drawn
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(messages)


def test_sequence_times_follow_the_model_exactly(traces):
    """Every socket crossing costs half of api_call_s, and phases sit inside their calls."""
    _, rows, _ = traces["hello"]
    _, messages, _ = derive_sequence(rows)
    mine = [r for r in rows if r.replication == 0 and r.request == "s0-c0-r0"]
    half = COSTS.api_call_s / 2
    request, pull, create = (phase_row(mine, p) for p in ("request", "pull", "create"))
    first_answer = next(m for m in messages if m.kind == "answer")
    assert first_answer.send_s == pytest.approx(request.start_s + half, abs=2e-6)
    calls = [m for m in messages if m.kind == "call"]
    assert calls[1].recv_s == pytest.approx(pull.start_s, abs=2e-6)
    assert calls[3].recv_s == pytest.approx(create.start_s, abs=2e-6)
    assert calls[1].send_s - calls[0].send_s == pytest.approx(2 * half, abs=2e-6)  # in, out
    blobs = {m.note.split()[0]: m.recv_s for m in messages if m.kind == "blob"}
    for layer in ("base", "app"):
        download = next(r for r in mine if r.phase == "download" and r.layer == layer)
        assert blobs[layer] == pytest.approx(download.end_s)


def test_sequence_of_a_cached_run_and_of_a_pull_that_shares_transfers(traces):
    _, rows, _ = traces["hello"]
    _, messages, _ = derive_sequence(rows, "s0-c0-r1")
    assert not any(m.kind in ("http", "blob") for m in messages)
    assert [m.label for m in messages if m.kind == "call"][0] == "POST /containers/create"
    assert "404 no such image" not in [m.note for m in messages]

    _, rows3, _ = traces["three-clients"]
    owner = {item.layer: item.owner for item in pull_layer_rows(rows3, "s0-c1-r0")}
    assert set(owner) == {"os", "runtime", "site"}
    _, messages, _ = derive_sequence(rows3, "s0-c1-r0")
    blob_gets = [m.label for m in messages if m.kind == "http" and "blob" in m.label]
    expected = [f"GET blob {layer}" + ("" if who == "s0-c1-r0" else f" (for {who})")
                for layer, who in owner.items()]
    assert sorted(blob_gets[1:]) == sorted(expected)   # [0] is the config


# -- gantt ------------------------------------------------------------------------------------
def test_gantt_highlights_the_critical_path(traces):
    _, rows, _ = traces["three-clients"]
    layers = pull_layer_rows(rows, "s0-c0-r0")
    assert [item.layer for item in layers] == ["os", "runtime", "site"]   # bottom first
    resolve = phase_row([r for r in rows if r.request == "s0-c0-r0" and r.replication == 0],
                        "resolve")
    path = critical_path(resolve, layers)
    largest = max((item.download for item in layers), key=lambda d: d.bytes)
    last_extract = max((item.extract for item in layers), key=lambda r: r.end_s)
    assert path[0] is resolve and path[-1] is last_extract
    assert largest in path
    assert [(r.phase, r.layer) for r in path] == [("resolve", ""), ("download", "runtime"),
                                                  ("extract", "runtime"), ("extract", "site")]

    ax = gantt_figure(rows).axes[0]
    critical = {tuple(p.get_gid().split(":")[1:3]) for p in ax.patches
                if (p.get_gid() or "").endswith(":critical")}
    assert critical == {(r.phase, r.layer) for r in path}
    assert any(p.get_gid() == "gantt:waits" for p in ax.patches)   # site waits for runtime
    assert [t.get_text() for t in ax.get_yticklabels()] == ["resolve", "layer os",
                                                            "layer runtime", "layer site"]


# -- topology ---------------------------------------------------------------------------------
def test_topology_of_one_node_labels_its_links(traces):
    _, rows, scenario = traces["hello"]
    ax = topology_figure(scenario, rows).axes[0]
    edge_labels = labels(ax, EDGE_LABEL_GID)
    link = next(t for t in edge_labels if "Mbit/s" in t and "RTT" in t)
    assert link.startswith("100 Mbit/s\nRTT 20 ms")
    assert "unix socket" in edge_labels
    g = build_topology(scenario)
    flows = link_flows(g, rows)[frozenset(("node", "@registry"))]
    downloads = [r for r in rows if r.replication == 0 and r.phase == "download"]
    assert sum(f[2] for f in flows) == sum(r.bytes for r in downloads)
    assert f"{sum(r.bytes for r in downloads) / 1e6:.3g} MB" in link


def test_topology_snapshot_rates_add_up_to_each_downloads_bytes(traces):
    _, rows, scenario = traces["three-clients"]
    g = build_topology(scenario)
    assert sum(1 for _, d in g.nodes(data=True) if d["kind"] == "client") == 3
    downloads = [(r.start_s, r.end_s, r.bytes, r.node) for r in rows
                 if r.replication == 0 and r.phase == "download"]
    for flow in downloads:   # integrate the estimated rate: it gives back the bytes
        steps = 4000
        dt = (flow[1] - flow[0]) / steps
        carried = dt * sum(rate_at_Bps(flow, downloads, flow[0] + (i + 0.5) * dt)
                           for i in range(steps))
        assert carried == pytest.approx(flow[2], rel=1e-2)
    t = downloads[0][0] + 0.5 * min(f[1] - f[0] for f in downloads)
    loads = link_loads(g, rows, at_s=t)
    assert loads[frozenset(("node", "@registry"))]["flows"] == 3
    capacity = 50e6 / 8 * COSTS.link_goodput_ratio   # three equal shares of the 50 Mbit/s link
    assert loads[frozenset(("node", "@registry"))]["mbps"] == pytest.approx(
        capacity * 8 / 1e6, rel=0.02)


def test_topology_of_a_cluster_reads_nodes_switches_and_mirrors():
    scenario = parse_scenario(CLUSTER)
    g = build_topology(scenario)
    kinds = defaultdict(list)
    for host, data in g.nodes(data=True):
        kinds[data["kind"]].append(host)
    assert sorted(kinds["daemon"]) == [f"worker-{i}" for i in range(4)]
    assert kinds["mirror"] == ["@mirror"] and kinds["switch"] == ["@switch"]
    assert g.edges["@switch", "@registry"]["label"] == "200 Mbit/s\nRTT 20 ms"
    rows = simulate(scenario, costs=COSTS)
    flows = link_flows(g, rows)
    layer_bytes = sum(layer.compressed_bytes for layer in scenario.images[0].layers)
    assert sum(f[2] for f in flows[frozenset(("@switch", "@registry"))]) == layer_bytes  # once
    assert sum(f[2] for f in flows[frozenset(("worker-2", "@switch"))]) == layer_bytes
    ax = topology_figure(scenario, rows).axes[0]
    assert sum("100 Mbit/s" in t for t in labels(ax, EDGE_LABEL_GID)) == 4

    racks = (CLUSTER.replace('mode = "mirror"', 'mode = "registry"')
             .replace("count = 4", "count = 30")
             .replace("registry_bandwidth_mbps = 200", "registry_bandwidth_mbps = 200\n"
                      'topology = "racks"\nrack_size = 10\nrack_uplink_mbps = 400'))
    g = build_topology(parse_scenario(racks))
    groups = [d for _, d in g.nodes(data=True) if d["kind"] == "group"]
    assert [len(d["members"]) for d in groups] == [10, 10, 10]   # drawn as one box per rack
    assert g.edges["@rack-0", "@core"]["label"] == "400 Mbit/s"


# -- cdf ----------------------------------------------------------------------------------------
def test_cdf_steps_through_the_sorted_startup_times(traces):
    _, hello, _ = traces["hello"]
    _, three, _ = traces["three-clients"]
    measured = as_measured(hello)
    ax = cdf_figure([("hello", hello), ("hello measured", measured), ("three", three)]).axes[0]
    lines = {line.get_gid(): line for line in ax.lines if (line.get_gid() or "").startswith("cdf:")}
    assert len(lines) == len(ax.get_legend().get_texts()) == 3
    for label, rows in (("hello", hello), ("hello measured", measured), ("three", three)):
        expected = sorted(e["startup_s"] for e in request_metrics(rows).values())
        line = lines[f"cdf:{label}"]
        assert list(line.get_xdata()) == expected
        assert line.get_ydata()[-1] == 1.0
        assert list(line.get_ydata()) == [(i + 1) / len(expected) for i in range(len(expected))]
    measured = [line for line in ax.lines
                if line.get_linestyle() == "--" and line.get_marker() == "o"]
    assert measured, "the measured trace is dashed with markers"
    assert ax.get_xscale() == "log"   # 44 ms next to 2 s


# -- breakdown ----------------------------------------------------------------------------------
def test_breakdown_segments_add_up_to_each_requests_total(traces):
    for name in ("hello", "shared-base", "three-clients"):
        _, rows, _ = traces[name]
        groups = by_request(rows, 0)
        for request, group in groups.items():
            parts = breakdown_s(group, rows)
            assert list(parts) == list(BREAKDOWN)
            assert sum(parts.values()) == pytest.approx(request_total_s(group), abs=1e-9)
            assert min(parts.values()) >= 0
        cold = breakdown_s(groups["s0-c0-r0"], rows)   # a cold pull: waits for bytes, then extracts
        assert cold["download wait"] > cold["extract"] > 0 and cold["resolve"] > 0
    _, hello, _ = traces["hello"]
    ax = breakdown_figure(hello, as_measured(hello), normalise=False).axes[0]
    widths = defaultdict(float)
    for patch in ax.patches:
        if tag_of(patch):
            widths[(tag_of(patch)[0], round(patch.get_y(), 6))] += patch.get_width()
    totals = sorted(request_total_s(g) for g in by_request(hello, 0).values())
    totals += sorted(request_total_s(g) for g in by_request(as_measured(hello), 0).values())
    assert sorted(widths.values()) == pytest.approx(sorted(totals))
    assert {source for source, _ in widths} == {"sim", "real"}


# -- comparison: model vs docksim vs Docker --------------------------------------------------
def test_comparison_draws_three_bars_per_request_with_a_docker_trace(traces):
    _, hello, _ = traces["hello"]
    ax = engines_figure(hello, as_measured(hello), as_measured(hello, "docker", 1.3)).axes[0]
    ys = defaultdict(set)
    for patch in ax.patches:
        if tag_of(patch):
            ys[tag_of(patch)[0]].add(round(patch.get_y() + patch.get_height() / 2))
    assert set(ys) == {"sim", "real", "docker"}
    assert ys["sim"] == ys["real"] == ys["docker"] == {0, 1}   # every request, three bars
    docker_bars = [p for p in ax.patches if tag_of(p) and tag_of(p)[0] == "docker"]
    lane0 = sum(p.get_width() for p in docker_bars if p.get_y() < 0.5)
    assert lane0 == pytest.approx(100.0, rel=1e-6)   # each lane relative to Docker's total
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("model ") and "\u2212" in t for t in texts)


# -- animation --------------------------------------------------------------------------------
def test_animation_has_the_frames_asked_for_small_and_reproducible(traces, tmp_path):
    _, rows, scenario = traces["three-clients"]
    first = animate_pull(scenario, rows, tmp_path / "a.gif", frames=12)
    second = animate_pull(scenario, rows, tmp_path / "b", frames=12)
    assert second.suffix == ".gif"
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size < 2_000_000
    with Image.open(first) as gif:
        assert gif.n_frames == 12
        gif.seek(0)
        start = gif.convert("RGB").tobytes()
        gif.seek(11)
        assert gif.convert("RGB").tobytes() != start


# -- the kinds, as the CLI calls them ---------------------------------------------------------
def test_every_kind_is_drawn_from_a_result_directory(traces, tmp_path):
    compare, _, _ = traces["compare"]
    docker, _, _ = traces["docker"]
    three, _, _ = traces["three-clients"]
    options = {"sequence": {}, "gantt": {}, "topology": {"at_s": "1.0"},
               "cdf": {"with": str(three)}, "breakdown": {},
               "comparison": {"docker": str(docker)},
               "animation": {"out": str(tmp_path / "pull.gif"), "frames": "6"}}
    assert set(options) == set(chart_kinds.KINDS)
    for kind, extra in options.items():
        result = chart_kinds.KINDS[kind](compare, dict(extra))
        if kind in chart_kinds.WRITES_FILE:
            assert Path(result).exists()
            continue
        first = save_figure(result, tmp_path / "one" / kind)   # drawn afresh: same bytes
        again = save_figure(chart_kinds.KINDS[kind](compare, dict(extra)), tmp_path / "two" / kind)
        assert [p.suffix for p in first] == [".png", ".svg"]
        for a, b in zip(first, again):
            assert a.read_bytes() == b.read_bytes(), f"{kind}: {a.name} not reproducible"
        with Image.open(first[0]) as png:
            assert png.size == (1600, 900)
    with pytest.raises(ValueError, match="comparison needs"):
        chart_kinds.KINDS["comparison"](three, {})


def test_the_chart_command_draws_a_trace_kind(traces, tmp_path):
    import simulate
    hello, _, _ = traces["hello"]
    out = tmp_path / "seq.png"
    status = simulate.main(["chart", str(hello), "--kind", "sequence", "--opt",
                            "request=s0-c0-r1", "--out", str(out)])
    assert status == 0 and out.exists() and out.with_suffix(".svg").exists()
    assert simulate.main(["chart", str(hello), "--kind", "gantt", "--opt", "request=s0-c0-r1",
                          "--out", str(tmp_path / "g.png")]) == 2   # a cached run did not pull


@pytest.mark.skipif(__import__("harness.measure", fromlist=["x"]).why_not_measurable() is not None,
                    reason="measuring needs root")
def test_every_kind_is_drawn_from_a_measured_trace(tmp_path):
    """The charts read what `compare` really writes: a simulated trace beside one
    measured on docksim's engine, not a stand-in."""
    import model
    from analysis.report import write_trace_dir
    from harness.measure import measure
    from vocab.scenario import load_scenario
    scenario = load_scenario(ROOT / "scenarios" / "hello.toml", overrides={"scenario.replications": 1})
    out = tmp_path / "compare"
    meta = {"scenario_file": str(ROOT / "scenarios" / "hello.toml")}
    write_trace_dir(model.simulate(scenario), out / "sim", scenario, "sim", "model", meta)
    real = measure(scenario)
    write_trace_dir(real, out / "real", scenario, "real", "launcher", meta)
    cold = [r for r in real if r.request == "s0-c0-r0"]
    assert {r.phase for r in cold} >= {"resolve", "download", "extract", "pull", "start", "run"}
    for kind in chart_kinds.KINDS:
        options = {"out": str(tmp_path / "pull.gif"), "frames": "4"} if kind == "animation" else {}
        if kind == "comparison":
            options = {}  # sim vs our engine, no Docker trace
        try:
            result = chart_kinds.KINDS[kind](out, options)
        except ValueError as exc:  # only the three-way chart may ask for a Docker trace
            assert kind == "comparison" and "docker" in str(exc).lower(), (kind, exc)
            continue
        if kind in chart_kinds.WRITES_FILE:
            assert Path(result).stat().st_size > 1000
        else:
            saved = save_figure(result, tmp_path / "measured" / kind)
            with Image.open(saved[0]) as png:
                assert png.size == (1600, 900)
