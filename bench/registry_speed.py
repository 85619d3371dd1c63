#!/usr/bin/env python3
"""Blob GET throughput on loopback: docksim's registry against the CNCF registry.

    .venv/bin/python bench/registry_speed.py [--runs 7] [--mb 100]

One random blob of `--mb` MB is pushed over HTTP (POST, then a monolithic PUT)
into each registry, a process of its own: docksim's (`python -m registry serve`,
unlimited link) and Debian's `docker-registry` (CNCF distribution 2.8, filesystem
storage).  Then one client (Python, reading into a reused 1 MiB buffer, so the
client's cost is the same for both) GETs the blob `--runs` times from each, in
turn, on a kept-alive connection after one warm-up GET (page cache).  Prints the
median throughput of each and the ratio; the bar is ours >= 1.0 x CNCF.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from registry.processes import RegistryUnavailable, cncf_registry, docksim_registry  # noqa: E402

BAR = 1.0
REPOSITORY = "bench/blob"


def push_blob(address: str, blob: Path, digest: str) -> None:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", headers={"Content-Length": "0"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 202:
            raise SystemExit(f"registry_speed: {address} refused the upload ({resp.status})")
        location = resp.getheader("Location")
        location = location.split(address, 1)[-1]  # an absolute URL (CNCF) or a path (docksim)
        separator = "&" if "?" in location else "?"
        with open(blob, "rb") as body:
            conn.request("PUT", f"{location}{separator}digest={digest}", body=body,
                         headers={"Content-Length": str(blob.stat().st_size),
                                  "Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            resp.read()
        if resp.status != 201:
            raise SystemExit(f"registry_speed: {address} refused the blob ({resp.status})")
    finally:
        conn.close()


def timed_gets(address: str, digest: str, size: int, runs: int) -> list[float]:
    """Seconds per GET of the whole blob, after one warm-up GET."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    buffer = memoryview(bytearray(1 << 20))
    times = []
    try:
        for i in range(runs + 1):
            started = time.perf_counter()
            conn.request("GET", f"/v2/{REPOSITORY}/blobs/{digest}")
            resp = conn.getresponse()
            received = 0
            while n := resp.readinto(buffer):
                received += n
            elapsed = time.perf_counter() - started
            if resp.status != 200 or received != size:
                raise SystemExit(f"registry_speed: {address} sent {received} bytes ({resp.status})")
            if i:
                times.append(elapsed)
    finally:
        conn.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mb", type=float, default=100.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="docksim-registry-speed-"))
    try:
        blob = work / "blob"
        size = int(args.mb * 1e6)
        blob.write_bytes(os.urandom(size))
        digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
        with ExitStack() as stack:
            try:
                registries = {"docksim": stack.enter_context(docksim_registry(work / "docksim")),
                              "CNCF distribution": stack.enter_context(cncf_registry(work / "cncf"))}
            except RegistryUnavailable as exc:
                print(f"registry_speed: {exc}", file=sys.stderr)
                return 2
            for address in registries.values():
                push_blob(address, blob, digest)
            times: dict[str, list[float]] = {name: [] for name in registries}
            for _ in range(args.runs):  # interleaved, one GET each per round
                for name, address in registries.items():
                    times[name] += timed_gets(address, digest, size, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = {name: size / statistics.median(values) for name, values in times.items()}
    print(f"blob GET of {args.mb:g} MB on loopback, one client, median of {args.runs} runs each")
    for name, rate in rates.items():
        print(f"{name:18s} {rate / 1e9:6.2f} GB/s  ({statistics.median(times[name]) * 1000:.0f} ms per GET)")
    ratio = rates["docksim"] / rates["CNCF distribution"]
    print(f"bar: docksim >= {BAR} x CNCF: {ratio:.2f} x -> {'met' if ratio >= BAR else 'missed'}")
    return 0 if ratio >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
