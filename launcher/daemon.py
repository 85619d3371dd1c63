"""docksim's daemon: a small dockerd that speaks the Docker Engine API (1.41).

The stock `docker` CLI and the Docker SDK talk to it over a unix socket.  It
owns the image store, the pull and push managers, the containers and the event
hub, and answers the same paths, JSON shapes and status codes as dockerd for
what it implements (images: ``launcher.image_routes``, containers:
``launcher.container_routes``; system and events here); anything else is a 404
with Docker's JSON error body.  One extra path, `GET /docksim/phases`, hands the
measuring client the daemon's phase timings.

Rootless (``rootless=True``): the daemon runs as root of its own user namespace
(``launcher.service`` puts it there), like dockerd under RootlessKit; without
privileges on the host it has no cgroups, so resource limits are refused with a
warning, said once at start and in every `create` that asks for one.
"""
from __future__ import annotations

import os
import platform
import socket
import threading
from pathlib import Path

from launcher import VERSION
from launcher.cgroups import CgroupManager
from launcher.container_routes import ContainerApi
from launcher.containers import ContainerManager
from launcher.events import EventLog, matches, parse_filters, parse_time
from launcher.http import ApiError, Request, Router, make_server
from launcher.image_routes import ImageApi
from launcher.phases import PhaseLog
from launcher.puller import PullManager
from launcher.pusher import Pusher
from launcher.registry_client import host_arch
from launcher.store import Store

API_VERSION = "1.41"
ROOTLESS_REASON = "rootless mode: no cgroups without root privileges"


class Daemon:
    def __init__(self, root: Path, default_registry: str, max_concurrent_downloads: int = 3,
                 rootless: bool = False, extract: str = "serial", retry=None,
                 durable: bool = False, max_layer_bytes: int | None = None):
        self.root = Path(root)
        self.rootless = rootless
        self.store = Store(self.root, durable=durable, max_layer_bytes=max_layer_bytes)
        self.phases = PhaseLog()
        self.events = EventLog()
        self.cgroups = CgroupManager(ROOTLESS_REASON if rootless else "")
        self.puller = PullManager(self.store, self.phases, default_registry,
                                  max_concurrent_downloads, extract=extract, retry=retry)
        self.containers = ContainerManager(self.store, self.phases, self.events, self.cgroups)
        self.containers.restore()  # after a crash: dockerd's restore() before serving
        self.default_registry = default_registry
        self.router = self._routes()
        self.server = None

    def _routes(self) -> Router:
        r = Router()
        r.add("GET", "/_ping", lambda req: "OK")
        r.add("GET", "/version", self.version)
        r.add("GET", "/info", self.info)
        r.add("GET", "/events", self.stream_events)
        ImageApi(self.store, self.puller, Pusher(self.store, self.default_registry),
                 self.containers, self.events).register(r)
        ContainerApi(self.containers).register(r)
        r.add("GET", "/docksim/phases", lambda req: {"events": self.phases.take(req.arg("request"))})
        return r

    # -- system -----------------------------------------------------------
    def version(self, req: Request) -> dict:
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Os": "linux",
                   "Arch": host_arch(), "KernelVersion": platform.release(),
                   "GoVersion": f"python{platform.python_version()}", "GitCommit": "",
                   "BuildTime": "", "Experimental": "false"}
        return {"Platform": {"Name": "docksim"}, "Version": VERSION, **details,
                "Experimental": False,
                "Components": [{"Name": "Engine", "Version": VERSION, "Details": details}]}

    def info(self, req: Request) -> dict:
        containers = self.containers.all()
        running = sum(c.status == "running" for c in containers)
        stopped = sum(c.status == "exited" for c in containers)
        cgroups = self.cgroups
        return {"ID": "docksim", "Name": socket.gethostname(), "ServerVersion": VERSION,
                "Containers": len(containers), "ContainersRunning": running,
                "ContainersPaused": 0, "ContainersStopped": stopped,
                "Images": len(self.store.list_images()), "Driver": "overlay",
                "DriverStatus": [["Backing Filesystem", "overlayfs"]],
                "DockerRootDir": str(self.root), "OSType": "linux", "OperatingSystem": "docksim",
                "Architecture": platform.machine(), "NCPU": os.cpu_count(),
                "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                "KernelVersion": platform.release(), "CgroupDriver": "cgroupfs" if cgroups.version else "none",
                "CgroupVersion": str(cgroups.version or ""),
                "MemoryLimit": "memory" in cgroups.roots, "SwapLimit": "memory" in cgroups.roots,
                "PidsLimit": "pids" in cgroups.roots, "CpuCfsQuota": "cpu" in cgroups.roots,
                "CpuCfsPeriod": "cpu" in cgroups.roots, "LoggingDriver": "json-file",
                "SecurityOptions": ["name=rootless"] if self.rootless else [],
                "Warnings": [f"WARNING: {cgroups.why_not}"] if cgroups.why_not else [],
                "Swarm": {"LocalNodeState": "inactive"}, "Plugins": {"Log": ["json-file"]},
                "RegistryConfig": {"Mirrors": [self.default_registry]}}

    def stream_events(self, req: Request) -> None:
        """`GET /events?since=&until=&filters=`: `docker events`, one JSON message
        per line; without `until` it lasts until the client hangs up."""
        try:
            since, until = parse_time(req.arg("since")), parse_time(req.arg("until"))
            filters = parse_filters(req.arg("filters"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        stream = req.start_stream("application/json")
        for message in self.events.follow(since, until, lambda: not (stream.broken or req.client_gone())):
            if matches(message, filters):
                stream.json(message)

    # -- life cycle -------------------------------------------------------
    def serve(self, socket_path: str) -> None:
        """Serve until shutdown() is called from another thread or a signal handler."""
        self.server = make_server(socket_path, self.router)
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self.server.server_close()
            Path(socket_path).unlink(missing_ok=True)
            self.containers.shutdown()

    def shutdown(self) -> None:
        if self.server is not None:
            threading.Thread(target=self.server.shutdown, daemon=True).start()
