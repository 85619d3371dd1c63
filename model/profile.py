"""Calibration profiles: the model's costs for one machine and one engine, on disk.

A profile is a small TOML file that a person can read: every number has its
unit in its name and a comment saying what it is.  `simulate.py calibrate`
writes one per (machine, engine) under ~/.config/docksim/calibration/; `run`
and `compare` read it.  The model never measures anything itself: a profile
is the only way numbers about a machine reach it.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from model.costs import Costs
from vocab.schema import ScenarioError

PROFILE_VERSION = 1
ENGINES = ("launcher", "docker")

# One line per cost, shown in the profile file and by `calibrate`.
EXPLAIN = {
    "api_call_s": "one Engine API call as the client sends it (round trip + client work)",
    "registry_request_s": "the registry's time per HTTP request, on top of the RTT",
    "unlimited_link_Bps": "download rate of an unshaped (loopback) link",
    "kernel_link_Bps": "download rate of an unshaped link on a kernel network (veth, bridge)",
    "link_goodput_ratio": "payload share of a shaped link's nominal rate",
    "extract_random_Bps": "extraction rate of incompressible layers (content bytes/s)",
    "extract_compressible_Bps": "extraction rate as compression grows without limit",
    "extract_fixed_s": "fixed cost per extracted layer",
    "userland_extract_s": "extra extraction time of a bottom layer (its base userland)",
    "pull_fixed_s": "from the last layer registered to the pull's end",
    "create_s": "container create (rootfs snapshot, record)",
    "start_s": "container start, until the process has exec'd",
    "start_answer_s": "container start, from the process's exec until the start call answers",
    "exit_s": "from the process's exit until the daemon has seen it",
    "remove_s": "container remove (unmount, delete the writable layer)",
    "container_parallelism": "container operations that run at full speed side by side",
    "manifest_lock_wait_s": "a pull's wait while another pull of its image writes the manifest",
    "rmi_s": "image remove (untag, delete unreferenced layers)",
    "extract_streams": "1: layers unpack while they download; 0: after the download",
    "tcp_setup_rtts_resolve": "round trips opening connections before a resolve (real TCP only)",
    "tcp_setup_rtts_blob": "round trips opening a connection before each blob GET (real TCP only)",
    "tcp_bulk_extra_rtts": "round trips a transfer loses when it outgrows TCP's slow start (real TCP only)",
    "unmount_flushes": "1: a container's unmount waits for the disk's dirty pages; 0: it does not",
    "phases_include_call": "1: create, start, remove are timed around the client's call; 0: by the daemon",
    "disk_flush_Bps": "rate at which a syncfs writes dirty file data to disk",
    "dirty_expire_s": "age at which the kernel writes dirty data back by itself",
}


@dataclass(frozen=True)
class Profile:
    engine: str
    machine: str
    created: str
    costs: Costs


def machine_key() -> str:
    """A stable name for this machine: host name, CPU count and architecture."""
    raw = f"{platform.node()}-{os.cpu_count()}cpu-{platform.machine()}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def profile_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "docksim" / "calibration"


def profile_path(engine: str) -> Path:
    """Where the saved profile of this machine and `engine` lives."""
    return profile_dir() / f"{machine_key()}-{engine}.toml"


def new_profile(engine: str, costs: Costs) -> Profile:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return Profile(engine, machine_key(), now, costs)


def format_profile(profile: Profile) -> str:
    lines = ["# docksim calibration profile: the model's costs on one machine for one engine.",
             "# Written by `simulate.py calibrate`; units are in the names (_s seconds, _Bps bytes/s).",
             "", "[profile]", f"version = {PROFILE_VERSION}", f'engine = "{profile.engine}"',
             f'machine = "{profile.machine}"', f'created = "{profile.created}"', "", "[costs]"]
    for field in fields(Costs):
        value = getattr(profile.costs, field.name)
        lines.append(f"{field.name} = {value!r}  # {EXPLAIN.get(field.name, '')}")
    return "\n".join(lines) + "\n"


def write_profile(profile: Profile, path: Path) -> None:
    """Write atomically, so a crash never leaves half a profile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(format_profile(profile), encoding="utf-8")
    os.replace(temp, path)


def read_profile(path: Path) -> Profile:
    """Read a profile; every problem is one ScenarioError line naming file and key."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such calibration profile") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: not a readable profile: {exc}") from None
    head, costs = doc.get("profile"), doc.get("costs")
    if not isinstance(head, dict) or not isinstance(costs, dict):
        raise ScenarioError(f"{path}: a profile needs [profile] and [costs] tables")
    if head.get("engine") not in ENGINES:
        raise ScenarioError(f"{path}: profile.engine: must be one of {', '.join(ENGINES)}")
    known = {f.name for f in fields(Costs)}
    for key, value in costs.items():
        if key not in known:
            raise ScenarioError(f"{path}: costs.{key}: unknown key")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{path}: costs.{key}: must be a number, not {value!r}")
    try:
        parsed = Costs(**{k: float(v) for k, v in costs.items()})
    except ValueError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return Profile(head["engine"], str(head.get("machine", "")), str(head.get("created", "")), parsed)
