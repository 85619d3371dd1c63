"""Measuring a built network from the inside: a bulk/echo TCP server and a client,
each run as `python -m harness.netprobe` in a namespace, plus helpers that run
them through a `Network` and return the client's figures.

Protocol: the client sends an 8-byte big-endian count N.  N > 0: the server
sends N bytes and closes.  N = 0: echo, the server returns each byte it gets.
Goodput is TCP payload bytes over time at the client, from the request sent to
the last byte received (so it includes one round trip and slow start, as a
download does); `window_mbps` counts only bytes received after a warm-up.
Round trip time is measured with TCP: the time connect() takes (one SYN,
SYN-ACK exchange) and the time of a one-byte echo on an open connection.
Clients may be given a common start time on CLOCK_MONOTONIC, which all
namespaces share, so that several start together whatever their start-up time.
"""
from __future__ import annotations

import argparse
import json
import select
import subprocess
import socket
import statistics
import struct
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PORT = 5201
CHUNK = 1 << 20
READY_TIMEOUT_S = 10
PROJECT = Path(__file__).resolve().parent.parent


def _serve_one(conn: socket.socket) -> None:
    with conn:
        header = b""
        while len(header) < 8:
            more = conn.recv(8 - len(header))
            if not more:
                return
            header += more
        count = struct.unpack("!Q", header)[0]
        if count == 0:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)
            return
        block = memoryview(bytes(CHUNK))
        try:
            while count > 0:
                count -= conn.send(block[:min(count, CHUNK)])
        except OSError:  # the client stopped reading (windowed fetch): fine
            pass


def serve(port: int) -> None:
    listener = socket.create_server(("0.0.0.0", port), backlog=128, reuse_port=True)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()


def fetch(addr: str, port: int, nbytes: int, start_at: float = 0.0, seconds: float = 0.0,
          warmup_s: float = 0.0) -> dict:
    """Download nbytes (or, with `seconds`, as much as arrives in that time)."""
    while (left := start_at - time.monotonic()) > 0:
        time.sleep(left)
    t0 = time.monotonic()
    sock = socket.create_connection((addr, port))
    t1 = time.monotonic()
    sock.sendall(struct.pack("!Q", nbytes))
    buffer = bytearray(CHUNK)
    got, window_bytes, first = 0, 0, None
    stop_at = t1 + seconds if seconds else float("inf")
    window_from = t1 + warmup_s
    now = t1
    while got < nbytes and now < stop_at:
        n = sock.recv_into(buffer)
        now = time.monotonic()
        if not n:
            break
        first = first or now
        got += n
        if now >= window_from:
            window_bytes += n
    sock.close()
    window_s = now - max(window_from, t1)
    return {"connect_s": t1 - t0, "first_byte_s": (first or now) - t1, "bytes": got,
            "seconds": now - t1, "mbps": got * 8 / (now - t1) / 1e6 if now > t1 else 0.0,
            "window_mbps": window_bytes * 8 / window_s / 1e6 if window_s > 0 else 0.0,
            "start": t0, "end": now}


def rtt(addr: str, port: int, count: int) -> dict:
    """Median TCP connect time and one-byte echo time, in ms."""
    connects, echoes = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        sock = socket.create_connection((addr, port))
        connects.append((time.perf_counter() - t0) * 1000)
        sock.close()
        time.sleep(0.002)
    sock = socket.create_connection((addr, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(struct.pack("!Q", 0))
    for _ in range(count):
        t0 = time.perf_counter()
        sock.sendall(b"x")
        sock.recv(1)
        echoes.append((time.perf_counter() - t0) * 1000)
    sock.close()
    return {"connect_ms": statistics.median(connects), "echo_ms": statistics.median(echoes),
            "connect_min_ms": min(connects), "connect_max_ms": max(connects)}


# ---- helpers for a harness.netns.Network -------------------------------------------

def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.netprobe", *args]


@contextmanager
def serving(net, ns: str, port: int = PORT) -> Iterator[None]:
    """The server running in namespace `ns` for the duration of the block."""
    proc = net.popen(ns, _argv("serve", "--port", str(port)), cwd=PROJECT, stdin=None,
                     stdout=subprocess.PIPE, text=True)
    try:
        if not select.select([proc.stdout], [], [], READY_TIMEOUT_S)[0] or proc.stdout.readline() != "ready\n":
            raise RuntimeError("the probe server did not start")
        yield
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()


def run_fetches(net, clients: list[tuple[str, str]], nbytes: int, port: int = PORT,
                seconds: float = 0.0, warmup_s: float = 0.0, lead_s: float = 1.5) -> list[dict]:
    """Fetch from every (namespace, address) at the same moment; one result each."""
    start_at = time.monotonic() + lead_s if len(clients) > 1 else 0.0
    procs = [net.popen(ns, _argv("fetch", addr, str(port), str(nbytes), "--start-at", repr(start_at),
                                 "--seconds", repr(seconds), "--warmup", repr(warmup_s)),
                       cwd=PROJECT, stdout=subprocess.PIPE, text=True) for ns, addr in clients]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"a probe client failed ({proc.returncode})")
        results.append(json.loads(out))
    return results


def measure_rtt(net, ns: str, addr: str, count: int = 20, port: int = PORT) -> dict:
    done = net.run(ns, _argv("rtt", addr, str(port), str(count)), cwd=PROJECT,
                   capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.netprobe")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=PORT)
    f = sub.add_parser("fetch")
    f.add_argument("addr")
    f.add_argument("port", type=int)
    f.add_argument("bytes", type=int)
    f.add_argument("--start-at", type=float, default=0.0)
    f.add_argument("--seconds", type=float, default=0.0)
    f.add_argument("--warmup", type=float, default=0.0)
    r = sub.add_parser("rtt")
    r.add_argument("addr")
    r.add_argument("port", type=int)
    r.add_argument("count", type=int)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port)
    elif args.command == "fetch":
        print(json.dumps(fetch(args.addr, args.port, args.bytes, args.start_at, args.seconds, args.warmup)))
    else:
        print(json.dumps(rtt(args.addr, args.port, args.count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
