"""Containers: dockerd's container objects on top of the runtime.

A container is an image's layers plus a writable layer (overlay), a process
description (argv, env, cwd, user, hostname) and a state machine
created → running → exited.  As in Docker, `create` prepares the root file
system, `start` runs the process until it has exec'd, the daemon watches for
its exit (the `run` phase), and `remove` unmounts and deletes the writable
layer.  Each step is recorded as a phase under the client's request tag.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from launcher import runtime
from launcher.http import ApiError
from launcher.phases import PhaseLog
from launcher.registry_client import familiar_name
from launcher.store import Store

log = logging.getLogger("docksim.daemon")
STOP_GRACE_S = 10.0


def rfc3339(epoch_s: float | None) -> str:
    if not epoch_s:
        return "0001-01-01T00:00:00Z"
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    dir: Path
    created_s: float = field(default_factory=time.time)
    status: str = "created"  # created | running | exited
    process: runtime.ContainerProcess | None = None
    exit_code: int = 0
    started_s: float = 0.0
    finished_s: float = 0.0
    exited: threading.Event = field(default_factory=threading.Event)
    removed: threading.Event = field(default_factory=threading.Event)

    @property
    def log_path(self) -> Path:
        return self.dir / "container.log"


def _merge_env(image_env: list[str], extra: list[str]) -> list[str]:
    """Docker's rule: the container's variables override the image's, by name."""
    merged = {item.split("=", 1)[0]: item for item in image_env}
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
    def __init__(self, store: Store, phases: PhaseLog):
        self.store = store
        self.phases = phases
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

    def create(self, body: dict, name: str, tag: str) -> Container:
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
        cid = secrets.token_hex(32)
        name = name.lstrip("/")
        with self._lock:
            self._check_name_free(name)
        container = Container(
            id=cid, name=name or f"docksim_{cid[:8]}", image=image, image_name=image_name,
            argv=argv, env=_merge_env(config.get("Env") or [], body.get("Env") or []),
            cwd=body.get("WorkingDir") or config.get("WorkingDir") or "/",
            user=body.get("User") or config.get("User") or "",
            hostname=body.get("Hostname") or cid[:12], host_config=body.get("HostConfig") or {},
            dir=self.store.container_dir(cid))
        # the output file exists from the start, so that an attach made before
        # `start` follows it even when the process is over in a millisecond
        container.log_path.touch()
        lowers = [self.store.layer_dir(d) for d in image["diff_ids"]]
        try:
            runtime.mount_rootfs(lowers, container.dir)
            with self._lock:
                self._check_name_free(name)  # again: another create may have taken it
                self._containers[cid] = container
        except BaseException:
            runtime.unmount_rootfs(container.dir)
            self.store.remove_container_dir(cid)
            raise
        self.phases.record(tag, "create", began)
        return container

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
            proc = runtime.start(container.dir / "rootfs", container.argv, container.env,
                                 cwd=container.cwd, hostname=container.hostname,
                                 user=container.user, log_path=container.log_path)
        except runtime.StartError as exc:
            container.status, container.exit_code = "exited", 127
            container.exited.set()
            raise ApiError(400, f"failed to create task for container: {exc}") from None
        container.process, container.status = proc, "running"
        container.started_s = time.time()
        self.phases.record(tag, "start", began, proc.exec_monotonic)
        threading.Thread(target=self._watch, args=(container, tag), daemon=True,
                         name=f"watch-{container.id[:12]}").start()

    def _watch(self, container: Container, tag: str) -> None:
        """Wait for the container's exit: the end of the `run` phase."""
        code = container.process.wait()
        self.phases.record(tag, "run", container.process.exec_monotonic)
        container.exit_code, container.status = code, "exited"
        container.finished_s = time.time()
        container.exited.set()
        if container.host_config.get("AutoRemove"):
            self.remove(container, force=True, tag=tag)

    def stop(self, container: Container, timeout_s: float = STOP_GRACE_S,
             sig: int = signal.SIGTERM) -> None:
        """SIGTERM, then SIGKILL after the grace period (docker stop)."""
        if container.status != "running":
            return
        container.process.kill(sig)
        if not container.exited.wait(timeout_s):
            container.process.kill(signal.SIGKILL)
            container.exited.wait()

    def remove(self, container: Container, force: bool, tag: str) -> None:
        began = time.monotonic()
        if container.status == "running":
            if not force:
                raise ApiError(409, f"You cannot remove a running container {container.id}. "
                               "Stop the container before attempting removal or force remove")
            self.stop(container, timeout_s=0)
        with self._lock:
            if self._containers.pop(container.id, None) is None:
                return  # already removed (auto-remove raced a client's DELETE)
        try:
            runtime.unmount_rootfs(container.dir)
            self.store.remove_container_dir(container.id)
            self.phases.record(tag, "remove", began)
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

    def image_in_use(self, image_id: str) -> bool:
        return any(c.image["id"] == image_id for c in self.all())
