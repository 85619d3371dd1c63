"""A delay line of our own, for kernels without netem: one small process that
joins two network devices (two veth ends) at layer 2 and holds every Ethernet
frame for a fixed one-way delay before passing it on.

What it reproduces: propagation delay.  Frames keep their order; TCP at both
ends sees the full round-trip time from its first SYN, so slow start, ACK
clocking and window limits behave as on a long path.  The veths it joins must
have TSO/GSO/GRO and checksum offload turned off (netns.py does it): then every
frame is at most MTU-sized, as on a wire, and carries a finished checksum (a
frame copied to user space with a partial checksum would be dropped by the
receiver).

How: an AF_PACKET raw socket bound to each device (outgoing frames ignored, so
the relay never sees its own sends), large kernel receive buffers, and one
loop: wait in select() until a frame arrives or the oldest held frame is due,
read everything waiting, stamp it with arrival time + delay, send every frame
whose time has come.  Frames from device A go out on B after `delay +
extra[destination MAC]`; frames from B go out on A after `delay + extra[source
MAC]`.  So with A on the registry's side and B on the nodes' side, node N's
extra delay applies to both directions of its traffic.

Not reproduced: jitter, loss, reordering, or any serialisation time (the rate
is tbf's job).  Its own limits: it is one Python process, so it adds 0.1-0.4 ms
to a round trip, and it caps throughput.  Each frame it sends also carries the
kernel's whole delivery path on the far side (bridge, tbf, the receiver's TCP),
so on the reference machine (2 vCPU) one TCP flow through it reaches 0.8-1.0
Gbit/s at 20 ms RTT and 1.2-1.5 Gbit/s at 2 ms when the machine is otherwise
idle, about half that when other work competes for the CPUs.  Frames it cannot
keep up with wait in 64 MB socket buffers; beyond that they are dropped and
counted (`drops`).  bench/netns_link.py prints the figures.

Run by netns.py as `python -m harness.delayline --a DEV --b DEV --delay-ms MS
[--extra MAC=MS ...] --parent PID` inside the hub namespace.  It prints `ready`
once both sockets are bound, and on SIGTERM one JSON line of counters.  It dies
with the thread that started it (PR_SET_PDEATHSIG), so a SIGKILLed builder does
not leave it running; build the network in a thread that outlives its use.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from harness.netcmd import NetworkError

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SOCKET_BUFFER_BYTES = 64 << 20   # several BDPs at 1 Gbit/s x 100 ms: absorbs our own pauses
RECV_BYTES = 2048                # an MTU-1500 frame is 1514 bytes; offloads are off
BATCH = 512                      # frames read per device per wake-up
PR_SET_PDEATHSIG = 1
PR_SET_TIMERSLACK = 29
READY_TIMEOUT_S = 10
PROJECT = Path(__file__).resolve().parent.parent


class _Stop(Exception):
    pass


def _packet_socket(device: str) -> socket.socket:
    # protocol 0 at creation receives nothing until bind() picks the device and
    # ETH_P_ALL, so no frame of another device ever gets in
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER_BYTES)
    sock.bind((device, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket, queues: dict, default: collections.deque, extra: dict,
           key: slice, due_base: float) -> int:
    """Read every waiting frame (up to BATCH) into its delay queue; return how many."""
    recv = sock.recv
    n = 0
    try:
        if not extra:  # one delay for all frames: the common case, kept lean
            append = default.append
            while n < BATCH:
                frame = recv(RECV_BYTES)
                append((due_base, frame))
                n += 1
        else:
            while n < BATCH:
                frame = recv(RECV_BYTES)
                extra_s = extra.get(frame[key], 0.0)
                queues[extra_s].append((due_base + extra_s, frame))
                n += 1
    except BlockingIOError:
        pass
    return n


def relay(dev_a: str, dev_b: str, delay_s: float, extra_s: dict[bytes, float],
          ready=lambda: None) -> dict:
    """Forward frames between dev_a and dev_b, each held for its delay, until
    SIGTERM; return the counters."""
    sock_a, sock_b = _packet_socket(dev_a), _packet_socket(dev_b)
    delays = sorted({0.0, *extra_s.values()})
    to_b = {d: collections.deque() for d in delays}  # A -> B, keyed by destination MAC
    to_a = {d: collections.deque() for d in delays}  # B -> A, keyed by source MAC
    sends = ((sock_b, list(to_b.values())), (sock_a, list(to_a.values())))
    counters = {"a_to_b": 0, "b_to_a": 0, "send_errors": 0, "max_held": 0}
    monotonic, readable = time.monotonic, [sock_a, sock_b]
    ready()
    try:
        while True:
            now = monotonic()
            wait = None
            for out, queues in sends:
                for queue in queues:
                    while queue and queue[0][0] <= now:
                        try:
                            out.send(queue.popleft()[1])
                        except OSError:  # ENOBUFS and the like: the frame is lost, as on a wire
                            counters["send_errors"] += 1
                    if queue:
                        left = queue[0][0] - now
                        if wait is None or left < wait:
                            wait = left
            ready_socks = select.select(readable, [], [], wait)[0]
            due = monotonic() + delay_s
            if sock_a in ready_socks:
                counters["a_to_b"] += _drain(sock_a, to_b, to_b[0.0], extra_s, slice(0, 6), due)
            if sock_b in ready_socks:
                counters["b_to_a"] += _drain(sock_b, to_a, to_a[0.0], extra_s, slice(6, 12), due)
            held = sum(map(len, to_b.values())) + sum(map(len, to_a.values()))
            if held > counters["max_held"]:
                counters["max_held"] = held
    except _Stop:
        pass
    drops = 0
    for sock in (sock_a, sock_b):
        drops += struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
        sock.close()
    counters["drops"] = drops
    return counters


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.delayline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="device on the registry's side")
    parser.add_argument("--b", required=True, help="device on the nodes' side")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay of every frame")
    parser.add_argument("--extra", action="append", default=[], metavar="MAC=MS",
                        help="more delay for frames to (A->B) or from (B->A) this MAC")
    parser.add_argument("--parent", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    libc = ctypes.CDLL(None, use_errno=True)
    # die with the process that built the network, even if it is SIGKILLed
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if args.parent and os.getppid() != args.parent:
        return 1
    libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # wake within ~1 us of a frame's time, not 50
    try:
        os.nice(-10)  # a link does not slow down when the machine is busy; keep ahead of bulk work
    except OSError:
        pass

    def stop(signum, frame):
        raise _Stop()
    signal.signal(signal.SIGTERM, stop)
    gc.disable()  # the loop makes no reference cycles; a collection would only add jitter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the builder, which stops us
    extra = {_mac(mac): float(ms) / 1000.0 for mac, ms in (item.split("=", 1) for item in args.extra)}
    counters = relay(args.a, args.b, args.delay_ms / 1000.0, extra,
                     ready=lambda: print("ready", flush=True))
    print(json.dumps(counters), flush=True)
    return 0


def start(ns_path_argv: list[str], dev_a: str, dev_b: str, delay_ms: float,
          extra_ms: dict[str, float]) -> subprocess.Popen:
    """Start the relay with `ns_path_argv` (the nsenter prefix of the namespace it
    runs in); return once it is forwarding."""
    argv = [*ns_path_argv, sys.executable, "-m", "harness.delayline", "--a", dev_a, "--b", dev_b,
            "--delay-ms", repr(delay_ms), "--parent", str(os.getpid()),
            *(f"--extra={mac}={ms!r}" for mac, ms in extra_ms.items() if ms > 0)]
    proc = subprocess.Popen(argv, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    answered = select.select([proc.stdout], [], [], READY_TIMEOUT_S)[0]
    if not answered or proc.stdout.readline() != "ready\n":
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        raise NetworkError(f"the delay line did not start: {err.strip()[-500:] or 'no answer'}")
    return proc


def stop(proc: subprocess.Popen) -> dict:
    """Stop the relay; return its counters ({} if it had none to give)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
