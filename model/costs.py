"""The engine's fixed costs and rates: every number the model assumes, in one place.

The model predicts time from two kinds of input: the scenario (sizes, link,
settings: what the user chose) and these costs (how fast a particular Docker
installation is: what the machine is).  The defaults below are
`simulate.py calibrate` on the reference machine (a 2-vCPU Debian VM) with
docksim's own engine, rounded; a saved calibration replaces them for another
machine or engine, so nothing else in ``model/`` may hold a timing constant.

Units are in the names: ``_s`` seconds, ``_Bps`` bytes per second.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Costs:
    """Fixed costs (seconds) and rates (bytes per second) of one Docker installation."""

    # One Engine API call as the Docker SDK makes it: the HTTP round trip on
    # the daemon's unix socket plus the SDK's own work (JSON, model objects),
    # not counting the daemon's work.  A bare keep-alive round trip measured
    # 0.63 ms here; whole `containers.run` calls put the SDK's share near 0.6 ms.
    api_call_s: float = 0.0015
    # The registry's own time to answer one request, on top of the link's RTT
    # (handler, disk lookup); paid by every /v2/, manifest, config and blob GET.
    registry_request_s: float = 0.0011
    # The rate of a link without a bandwidth limit (loopback HTTP from the
    # registry into the daemon); concurrent transfers still share it.
    unlimited_link_Bps: float = 6.6e8
    # The rate of an unshaped link on a kernel network (`--network kernel`):
    # veth pairs and a bridge with offloads off, so every 1514-byte frame
    # crosses the stack on its own, far slower than loopback's 64 kB ones.
    kernel_link_Bps: float = 3.3e8
    # Payload fraction of a shaped link's nominal rate (TCP/IP and HTTP
    # framing).  1.0 keeps hand arithmetic exact; tbf here measured about 0.957.
    link_goodput_ratio: float = 1.0
    # Extraction (gunzip + untar + register one layer), in bytes of layer
    # content written per second: for incompressible data (compression 1) and
    # for data that compresses extremely well.  See ``extract_Bps``.
    extract_random_Bps: float = 6.4e8
    extract_compressible_Bps: float = 4.7e8
    # Per-layer extraction overhead: open the blob, create the snapshot
    # directory, commit it into the layer store.
    extract_fixed_s: float = 0.0043
    # Extra extraction time of a layer that carries the base userland (the
    # bottom layer of an image, `Scenario.bottom_layers`): its static BusyBox is
    # real deflate-coded data, which inflates at a few hundred MB/s, while the
    # filler the rates above are measured on inflates ten times faster.
    userland_extract_s: float = 0.010
    # After the last layer is registered: write the image record and tag.
    pull_fixed_s: float = 0.0028
    # Container create: rootfs snapshot (overlay dirs) and the container record.
    create_s: float = 0.0028
    # Container start: namespaces, cgroups, mounts, pivot_root, until execve.
    start_s: float = 0.0071
    # Container start, from the process's execve until the start call answers:
    # the daemon saves the container's running state, announces it on the event
    # stream and begins watching for its exit.  The process already runs.  0
    # for an engine whose start phase is timed around the call (dockerd).
    start_answer_s: float = 0.0
    # From the process's exit until the daemon has reaped it and records the status.
    exit_s: float = 0.0023
    # Container remove: unmount, delete the writable layer, forget the record.
    remove_s: float = 0.0016
    # How many container operations (create, start, exit, remove) run at full
    # speed side by side; more share that capacity (model/sharing.py).  Not a
    # CPU count: the engine's effective parallelism on this machine, fitted by
    # calibration's concurrent runs.  inf: no sharing.
    container_parallelism: float = 1.0
    # How long a pull waits when another pull of the same image is writing its
    # manifest: dockerd's retries of containerd's locked ingest, one such pull
    # after another (model/ingest.py).  0: pulls of one image do not contend
    # (docksim's engine).
    manifest_lock_wait_s: float = 0.0
    # Image remove: untag, delete the image record and unreferenced layers.
    rmi_s: float = 0.0043
    # 1.0: layers unpack while their bytes arrive (docksim's engine streams);
    # 0.0: the blob is downloaded first and extracted afterwards (dockerd).
    extract_streams: float = 1.0
    # Round trips spent opening TCP connections on a real network (charged
    # only where `[network] slow_start` says the link is real TCP): before a
    # pull's resolve, and before each blob GET.  The emulated loopback link
    # opens connections at once, so calibration's main workload cannot see
    # them; its kernel-network part measures them.  docksim's daemon opens one
    # connection to resolve and one per blob; dockerd pings /v2/ on a
    # connection of its own and keeps idle ones for reuse.
    tcp_setup_rtts_resolve: float = 1.1
    tcp_setup_rtts_blob: float = 0.0
    # Round trips a transfer on real TCP loses when it outgrows slow start:
    # the overshoot into the bottleneck's queue, its losses and the drain
    # (model/tcp.py).  It depends on the kernel's congestion control, so
    # calibration measures it on a shaped kernel link.
    tcp_bulk_extra_rtts: float = 0.0
    # 1.0: every unmount of a container's overlay writes back the disk's dirty
    # pages and waits (dockerd's overlay2, no `volatile`), so a create right
    # after a pull pays for writing the pull's layers (model/pagecache.py);
    # 0.0: it does not (docksim's engine mounts with `volatile`).
    unmount_flushes: float = 0.0
    # 1.0: `create`, `start` and `remove` are timed around the client's call,
    # round trip included (dockerd, measured through the SDK); 0.0: the daemon
    # times its own work (docksim's engine).  Only what the trace records
    # changes, never when anything happens.
    phases_include_call: float = 0.0
    # How fast a syncfs writes dirty file data back to this machine's disk.
    disk_flush_Bps: float = 2.0e9
    # How long written data stays dirty before the kernel's flusher writes it
    # back on its own (vm.dirty_expire_centisecs, 30 s by default).
    dirty_expire_s: float = 30.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if math.isnan(value):
                raise ValueError(f"Costs.{field.name} is NaN")
            if field.name.endswith("_Bps") and not value > 0:
                raise ValueError(f"Costs.{field.name} must be positive, not {value}")
            if field.name.endswith("_s") and not 0 <= value < math.inf:
                raise ValueError(f"Costs.{field.name} must be a finite number >= 0, not {value}")
        for name in ("tcp_setup_rtts_resolve", "tcp_setup_rtts_blob", "tcp_bulk_extra_rtts"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"Costs.{name} must be a finite number >= 0, not {getattr(self, name)}")
        for name in ("extract_streams", "unmount_flushes", "phases_include_call"):
            if getattr(self, name) not in (0.0, 1.0):
                raise ValueError(f"Costs.{name} must be 0 or 1, not {getattr(self, name)}")
        if not self.container_parallelism > 0:
            raise ValueError(f"Costs.container_parallelism must be > 0, not {self.container_parallelism}")
        if not 0 < self.link_goodput_ratio <= 1:
            raise ValueError(f"Costs.link_goodput_ratio must be in (0, 1], not {self.link_goodput_ratio}")

    def extract_Bps(self, compression: float) -> float:
        """Extraction rate of a layer whose content compresses `compression`:1.

        Extracting costs something per byte read from the blob (inflate, the
        digest check, the tar stream) and something per byte written into the
        snapshot.  A layer of S content bytes has S / compression blob bytes,
        so its time per content byte is

            1 / rate(c) = 1 / R_comp + (1 / R_rand - 1 / R_comp) / c

        with R_rand = ``extract_random_Bps`` (c = 1: every byte is read and
        written) and R_comp = ``extract_compressible_Bps`` (c -> infinity: the
        read side vanishes).  The rate moves monotonically between the two and
        works whichever of them is larger, so calibration may choose either.
        An infinite rate (for tests) means extraction takes no time.
        """
        per_content_byte_s = (1 / self.extract_compressible_Bps
                              + (1 / self.extract_random_Bps - 1 / self.extract_compressible_Bps)
                              / compression)
        return math.inf if per_content_byte_s <= 0 else 1 / per_content_byte_s

    def extract_s(self, size_bytes: int, compression: float) -> float:
        """Duration of one layer's extraction: the fixed part plus content over rate."""
        return self.extract_fixed_s + size_bytes / self.extract_Bps(compression)

    def link_Bps(self, bandwidth_mbps: float | None) -> float:
        """Payload rate of the registry->node link (Mbit/s are 10**6 bit/s)."""
        if bandwidth_mbps is None:
            return self.unlimited_link_Bps
        return bandwidth_mbps * 1e6 / 8 * self.link_goodput_ratio

    def with_(self, **changes: float) -> "Costs":
        """A copy with some values changed (for calibration and what-if sweeps)."""
        return replace(self, **changes)

    @classmethod
    def free(cls, **changes: float) -> "Costs":
        """Every fixed cost zero and every rate infinite, except `changes`.

        Useful to isolate one effect: a world where only the link and the
        values given here take time, so its timings can be solved by hand.
        """
        values = {f.name: (math.inf if f.name.endswith("_Bps") else 0.0) for f in fields(cls)}
        values["link_goodput_ratio"] = 1.0
        values["container_parallelism"] = math.inf
        values.update(changes)
        return cls(**values)
