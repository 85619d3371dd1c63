"""Containers: dockerd's container objects on top of the runtime.

A container is an image's layers plus a writable layer (overlay), a process
description (argv, env, cwd, user, hostname, capabilities), resource limits (a
cgroup) and a state machine created -> running -> exited.  As in Docker, `create`
prepares the root file system, `start` makes the cgroup and runs the process
until it has exec'd, the daemon watches for its exit (the `run` phase), deletes the cgroup
then (as containerd deletes the task) after reading whether the OOM killer struck,
and `remove` unmounts and deletes the writable layer and the logs.  Each step is
recorded as a phase under the client's request tag and published as a Docker
event (create, start, kill, oom, die, stop, destroy).  Every change of state is
written to the container's record (``launcher.container_records``), which a
daemon restarted after a crash reads back (``launcher.recovery``).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from launcher import capabilities, runtime
from launcher.cgroups import Cgroup, CgroupError, CgroupManager, Limits
from launcher.container_records import to_record
from launcher.events import EventLog
from launcher.http import ApiError
from launcher.phases import PhaseLog
from launcher.registry_client import familiar_name
from launcher.store import Store

log = logging.getLogger("docksim.daemon")
STOP_GRACE_S = 10.0
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def rfc3339(epoch_s: float | None) -> str:
    if not epoch_s:
        return "0001-01-01T00:00:00Z"
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_signal(name: str | int) -> signal.Signals:
    """"SIGTERM", "TERM", "15" or 15, as `docker kill -s` and StopSignal take it."""
    text = str(name).strip()
    try:
        return (signal.Signals(int(text)) if text.isdigit()
                else signal.Signals["SIG" + text.upper().removeprefix("SIG")])
    except (KeyError, ValueError):
        raise ApiError(400, f"Invalid signal: {name}") from None


@dataclass
class Container:
    id: str
    name: str
    image: dict              # the store's image record
    image_name: str          # as the client asked for it
    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    host_config: dict
    limits: Limits
    capabilities: int        # a mask of capability(7) numbers
    stop_signal: str
    stop_timeout: float | None
    labels: dict
    dir: Path
    created_s: float = field(default_factory=time.time)
    status: str = "created"  # created | running | exited
    process: runtime.ContainerProcess | None = None
    cgroup: Cgroup | None = None
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_s: float = 0.0
    finished_s: float = 0.0
    exited: threading.Event = field(default_factory=threading.Event)
    removed: threading.Event = field(default_factory=threading.Event)

    @property
    def log_path(self) -> Path:
        return self.dir / "container.log"

    def attributes(self) -> dict[str, str]:
        """The Actor attributes of this container's events."""
        return {"image": self.image_name, "name": self.name, **self.labels}


def _environment(image_env: list[str], extra: list[str], hostname: str) -> list[str]:
    """Docker's rule: HOSTNAME first, then the image's variables, overridden by
    the container's, by name."""
    merged = {"HOSTNAME": f"HOSTNAME={hostname}"}
    merged.update({item.split("=", 1)[0]: item for item in image_env})
    merged.update({item.split("=", 1)[0]: item for item in extra})
    return list(merged.values())


def command_line(image_config: dict, body: dict) -> list[str]:
    """Entrypoint + Cmd, each from the request or else from the image (Docker's
    rule: a request that sets Entrypoint drops the image's Cmd)."""
    entry = body.get("Entrypoint")
    cmd = body.get("Cmd")
    if isinstance(entry, str):
        entry = [entry]
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    if entry is None:
        entry = image_config.get("Entrypoint") or []
        cmd = cmd if cmd else (image_config.get("Cmd") or [])
    return list(entry) + list(cmd or [])


class ContainerManager:
    def __init__(self, store: Store, phases: PhaseLog, events: EventLog, cgroups: CgroupManager):
        self.store = store
        self.phases = phases
        self.events = events
        self.cgroups = cgroups
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()

    def get(self, name_or_id: str) -> Container:
        with self._lock:
            if name_or_id in self._containers:
                return self._containers[name_or_id]
            for c in self._containers.values():
                if c.name == name_or_id.lstrip("/") or (len(name_or_id) >= 3 and c.id.startswith(name_or_id)):
                    return c
        raise ApiError(404, f"No such container: {name_or_id}")

    def all(self) -> list[Container]:
        with self._lock:
            return sorted(self._containers.values(), key=lambda c: -c.created_s)

    def create(self, body: dict, name: str, tag: str) -> tuple[Container, list[str]]:
        """`docker create`; returns the container and Docker's warnings."""
        began = time.monotonic()
        image_name = body.get("Image") or ""
        image = (self.store.get_image(image_name) or self.store.get_image(familiar_name(image_name))
                 if image_name else None)
        if image is None:
            raise ApiError(404, f"No such image: {image_name}")
        config = image.get("config", {}).get("config", {})
        argv = command_line(config, body)
        if not argv:
            raise ApiError(400, "no command specified")
        if body.get("OpenStdin") or body.get("AttachStdin") or body.get("Tty"):
            # refused here, not at attach, so that no half-used container is left
            raise ApiError(400, "docksim runs containers without stdin and terminal "
                           "(no docker run -i / -t)")
        host_config = body.get("HostConfig") or {}
        try:
            limits = Limits.from_host_config(host_config)
            caps = capabilities.mask_from_host_config(host_config)
        except (CgroupError, ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from None
        name = name.lstrip("/")
        if name and not _NAME_RE.fullmatch(name):
            raise ApiError(400, f"Invalid container name ({name}), only "
                           "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        stop_signal = body.get("StopSignal") or config.get("StopSignal") or "SIGTERM"
        parse_signal(stop_signal)  # a bad one is refused now, not at `docker stop`
        cid = secrets.token_hex(32)
        hostname = body.get("Hostname") or cid[:12]
        with self._lock:
            self._check_name_free(name)
        container = Container(
            id=cid, name=name or f"docksim_{cid[:8]}", image=image, image_name=image_name,
            argv=argv, env=_environment(config.get("Env") or [], body.get("Env") or [], hostname),
            cwd=body.get("WorkingDir") or config.get("WorkingDir") or "/",
            user=body.get("User") or config.get("User") or "", hostname=hostname,
            host_config=host_config, limits=limits, capabilities=caps,
            stop_signal=stop_signal, stop_timeout=body.get("StopTimeout"), labels=dict(body.get("Labels") or {}),
            dir=self.store.container_dir(cid))
        # the log exists from the start, so that an attach made before `start`
        # follows it even when the process is over in a millisecond
        container.log_path.touch()
        lowers = [self.store.layer_dir(d) for d in image["diff_ids"]]
        try:
            runtime.mount_rootfs(lowers, container.dir)
            self.store.save_container_record(cid, to_record(container))  # now it exists
            with self._lock:
                self._check_name_free(name)  # again: another create may have taken it
                self._containers[cid] = container
        except BaseException:
            runtime.unmount_rootfs(container.dir)
            self.store.remove_container_dir(cid)
            raise
        self.phases.record(tag, "create", began)
        self.events.publish("container", "create", cid, **container.attributes())
        return container, self.cgroups.unsupported(limits)

    def _check_name_free(self, name: str) -> None:
        if name and any(c.name == name for c in self._containers.values()):
            raise ApiError(409, f'Conflict. The container name "/{name}" is already in use')

    def start(self, container: Container, tag: str) -> None:
        began = time.monotonic()
        if container.status == "running":
            return
        if container.status == "exited":
            raise ApiError(409, f"container {container.id[:12]} has exited; docksim does not restart containers")
        try:
            container.cgroup = self.cgroups.create(container.id, container.limits)
        except CgroupError as exc:
            raise ApiError(500, f"failed to create task for container: {exc}") from None
        try:
            proc = runtime.start(container.dir / "rootfs", container.argv, container.env,
                                 cwd=container.cwd, hostname=container.hostname,
                                 user=container.user, log_path=container.log_path,
                                 cgroup_procs=container.cgroup.procs_files() if container.cgroup else [],
                                 capabilities=container.capabilities)
        except runtime.StartError as exc:
            self._drop_cgroup(container)
            container.status, container.exit_code = "exited", exc.exit_code or 127
            container.error = str(exc)
            self._save(container)
            container.exited.set()
            if container.host_config.get("AutoRemove"):  # dockerd removes it too
                self.remove(container, force=True, tag=tag)
            raise ApiError(400, f"failed to create task for container: {exc}") from None
        except BaseException:
            self._drop_cgroup(container)
            raise
        container.process, container.status = proc, "running"
        container.started_s = time.time()
        self._save(container)
        self.phases.record(tag, "start", began, proc.exec_monotonic)
        self.events.publish("container", "start", container.id, **container.attributes())
        threading.Thread(target=self._watch, args=(container, tag), daemon=True,
                         name=f"watch-{container.id[:12]}").start()

    def _watch(self, container: Container, tag: str) -> None:
        """Wait for the container's exit: the end of the `run` phase."""
        code = container.process.wait()
        self.phases.record(tag, "run", container.process.exec_monotonic)
        container.oom_killed = bool(container.cgroup and container.cgroup.oom_kills())
        self._drop_cgroup(container)
        container.exit_code, container.status = code, "exited"
        container.finished_s = time.time()
        self._save(container)  # before `exited`: a waiting `docker rm` deletes the dir next
        if container.oom_killed:
            self.events.publish("container", "oom", container.id, **container.attributes())
        self.events.publish("container", "die", container.id, exitCode=str(code),
                            **container.attributes())
        container.exited.set()
        if container.host_config.get("AutoRemove"):
            self.remove(container, force=True, tag=tag)

    def _save(self, container: Container) -> None:
        """Rewrite the container's record after a change of state; a failure is
        logged, not raised: the container itself is fine, only a restarted daemon
        would see its previous state."""
        try:
            self.store.save_container_record(container.id, to_record(container))
        except OSError:
            log.exception("container %s: cannot save its record", container.id[:12])

    def restore(self) -> None:
        """Take over the containers a previous daemon left (``launcher.recovery``)."""
        from launcher.recovery import restore_containers  # it imports this module
        restored = restore_containers(self.store, self.cgroups, self._save)
        with self._lock:
            self._containers.update((c.id, c) for c in restored)

    def _drop_cgroup(self, container: Container) -> None:
        if container.cgroup is not None:
            try:
                container.cgroup.remove()
            except CgroupError:
                log.exception("container %s", container.id[:12])
            container.cgroup = None

    def kill(self, container: Container, sig: signal.Signals) -> None:
        """One signal to PID 1 (`docker kill`); a SIGKILL is waited for."""
        self.events.publish("container", "kill", container.id, signal=str(int(sig)),
                            **container.attributes())
        container.process.kill(sig)
        if sig == signal.SIGKILL:
            container.exited.wait(10.0)

    def stop(self, container: Container, timeout_s: float | None = None) -> bool:
        """`docker stop`: the stop signal (SIGTERM unless the image says otherwise),
        SIGKILL after the grace period; False if it was not running."""
        if container.status != "running":
            return False
        if timeout_s is None:
            timeout_s = STOP_GRACE_S if container.stop_timeout is None else container.stop_timeout
        self.kill(container, parse_signal(container.stop_signal))
        if not container.exited.wait(max(timeout_s, 0)):
            self.kill(container, signal.SIGKILL)
            container.exited.wait()
        self.events.publish("container", "stop", container.id, **container.attributes())
        return True

    def remove(self, container: Container, force: bool, tag: str) -> None:
        began = time.monotonic()
        if container.status == "running":
            if not force:
                raise ApiError(409, f"You cannot remove a running container {container.id}. "
                               "Stop the container before attempting removal or force remove")
            self.kill(container, signal.SIGKILL)  # `docker rm -f`: no grace period
            container.exited.wait()
        with self._lock:
            if self._containers.pop(container.id, None) is None:
                return  # already removed (auto-remove raced a client's DELETE)
        try:
            runtime.unmount_rootfs(container.dir)
            self.store.remove_container_dir(container.id)
            self.phases.record(tag, "remove", began)
            self.events.publish("container", "destroy", container.id, **container.attributes())
        finally:
            container.removed.set()  # after the record: a waiter may fetch the phases next

    def shutdown(self) -> None:
        """Stop every container and unmount every rootfs (the daemon is exiting)."""
        for container in self.all():
            try:
                self.stop(container, timeout_s=1.0)
                self.remove(container, force=True, tag="")
            except Exception:  # keep cleaning the others
                log.exception("cleanup of container %s failed", container.id[:12])
        self.cgroups.cleanup()

    def image_in_use(self, image_id: str) -> bool:
        return any(c.image["id"] == image_id for c in self.all())
