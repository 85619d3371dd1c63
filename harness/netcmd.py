"""Kernel plumbing for docksim's networks: running `ip`, `tc` and `ethtool`
inside named network namespaces, finding the processes that live in them, and
the owner records that tell a live run's namespaces from a dead run's.

Every namespace docksim makes is named `<prefix>-<role>`, the prefix being
`dks` and six random hex digits chosen per run; its owner record is
`/run/docksim/<prefix>.pid` holding the owning process's PID and start time (the
start time guards against a recycled PID).  The record is written before the
first namespace exists and removed after the last one is gone, so a namespace
with our prefix and no live owner is a leftover.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

NETNS_DIR = Path("/run/netns")
OWNER_DIR = Path("/run/docksim")
PREFIX_RE = re.compile(r"^dks[0-9a-f]{6}$")
NS_RE = re.compile(r"^(dks[0-9a-f]{6})-")
COMMAND_TIMEOUT_S = 30


class NetworkError(Exception):
    """A kernel network could not be built or removed; the text says which step."""


def new_prefix() -> str:
    """A fresh per-run prefix, `dks` + 6 hex digits (short: interface names are
    limited to 15 characters)."""
    while True:
        prefix = "dks" + secrets.token_hex(3)
        if not (OWNER_DIR / f"{prefix}.pid").exists() and not any(
                name.startswith(prefix + "-") for name in list_netns()):
            return prefix


def nsenter_argv(ns: str, argv: list[str]) -> list[str]:
    """argv run inside namespace `ns`.  nsenter --net only switches the network
    namespace (`ip netns exec` would also remount /sys, hiding the cgroup tree)
    and then execs argv, so the PID returned by Popen is argv's own."""
    return ["nsenter", f"--net={NETNS_DIR / ns}", "--", *argv]


def sh(argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run one plumbing command; raise NetworkError with its stderr when it fails."""
    try:
        done = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as error:
        raise NetworkError(f"{argv[0]} is not installed ({error})") from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{' '.join(argv)}: no answer within {COMMAND_TIMEOUT_S} s") from None
    if check and done.returncode != 0:
        what = " ".join(argv) if input is None else f"{' '.join(argv)} <<{input.strip()!r}"
        raise NetworkError(f"{what}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done


def ip_batch(ns: str | None, lines: list[str]) -> None:
    """Several `ip` commands in one process (`ip -batch`), in namespace `ns`."""
    if lines:
        sh(["ip", *(["-n", ns] if ns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def tc_batch(ns: str, lines: list[str]) -> None:
    if lines:
        sh(["tc", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def in_ns_shell(ns: str, commands: list[str]) -> None:
    """Shell commands (ethtool, sysctl) in one process inside `ns`; stops at the first failure."""
    if commands:
        sh(nsenter_argv(ns, ["sh", "-ec", "\n".join(commands)]))


def ns_script(ethtool_devs: list[str], ip_lines: list[str], tc_lines: list[str]) -> list[str]:
    """The lines of one shell script configuring a namespace (run with
    in_ns_shell): a fork per namespace, not one per command.  IPv6 goes off
    first, so no link-local address, DAD or MLD traffic ever crosses a link."""
    script = ["if [ -d /proc/sys/net/ipv6 ]; then sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
              "net.ipv6.conf.default.disable_ipv6=1; fi"]
    script += [f"ethtool -K {dev} tx off sg off tso off gso off gro off >/dev/null" for dev in ethtool_devs]
    for tool, lines in (("ip", ip_lines), ("tc", tc_lines)):
        if lines:
            script.append(f"{tool} -batch - <<'EOF'\n" + "\n".join(lines) + "\nEOF")
    return script


def why_unavailable() -> str | None:
    """One line saying why kernel networks cannot be built here, or None."""
    if os.geteuid() != 0:
        return "kernel networks need root (network namespaces, tc)"
    missing = [tool for tool in ("ip", "tc", "nsenter", "ethtool") if shutil.which(tool) is None]
    if missing:
        return f"kernel networks need {', '.join(missing)} (apt-get install iproute2 util-linux ethtool)"
    return None


def list_netns() -> list[str]:
    """Names under /run/netns (what `ip netns list` shows)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def delete_netns(ns: str) -> None:
    """Remove a named namespace.  The kernel destroys it, and every veth end and
    bridge inside it, once no process is left in it."""
    if (NETNS_DIR / ns).exists():
        sh(["ip", "netns", "delete", ns])


def pids_in_netns(names: list[str]) -> list[int]:
    """Processes (other than this one) whose network namespace is one of `names`."""
    inodes = set()
    for ns in names:
        try:
            inodes.add(os.stat(NETNS_DIR / ns).st_ino)
        except OSError:
            pass
    found = []
    if not inodes:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.append(int(entry))
            except OSError:  # exited meanwhile, or a kernel thread
                pass
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes; only its parent can reap it
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def terminate(pids: list[int], timeout_s: float = 5.0) -> None:
    """SIGTERM the given processes, SIGKILL what is left after `timeout_s`."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [pid for pid in left if alive(pid)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of its stat)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def write_owner(prefix: str) -> None:
    OWNER_DIR.mkdir(parents=True, exist_ok=True)
    (OWNER_DIR / f"{prefix}.pid").write_text(f"{os.getpid()} {start_time(os.getpid())}\n")


def remove_owner(prefix: str) -> None:
    (OWNER_DIR / f"{prefix}.pid").unlink(missing_ok=True)


def owner_alive(prefix: str) -> bool:
    """True while the process that built `prefix`'s network still runs."""
    try:
        pid, started = (OWNER_DIR / f"{prefix}.pid").read_text().split()
    except (OSError, ValueError):
        return False
    return alive(int(pid)) and start_time(int(pid)) == started


def known_prefixes() -> set[str]:
    """Prefixes seen in namespace names or owner records.  Namespaces are listed
    before records are read: a run writes its record before its first namespace,
    so a namespace seen here whose record is missing really has no owner."""
    found = {m.group(1) for m in map(NS_RE.match, list_netns()) if m}
    if OWNER_DIR.is_dir():
        found |= {p.stem for p in OWNER_DIR.glob("*.pid") if PREFIX_RE.match(p.stem)}
    return found


def root_links_with(prefix: str) -> list[str]:
    """Links in this (the root) namespace whose name starts with `prefix`.
    docksim creates none there; this only finds leftovers of a broken run."""
    out = sh(["ip", "-o", "link", "show"], check=False).stdout
    names = [line.split(":", 2)[1].strip().split("@", 1)[0] for line in out.splitlines() if ":" in line]
    return [name for name in names if name.startswith(prefix)]
