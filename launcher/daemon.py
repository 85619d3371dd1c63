"""docksim's daemon: a small dockerd that speaks the Docker Engine API (1.41).

The stock `docker` CLI and the Docker SDK talk to it over a unix socket.  It
owns the image store, the pull manager and the containers, and answers the
same paths, JSON shapes and status codes as dockerd for what it implements;
anything else is a 404 with Docker's JSON error body.  One extra path,
`GET /docksim/phases`, hands the measuring client the daemon's phase timings.
"""
from __future__ import annotations

import os
import platform
import signal
import socket
import threading
import time
from pathlib import Path

from launcher import VERSION
from launcher.containers import Container, ContainerManager, rfc3339
from launcher.http import ApiError, Request, Router, make_server
from launcher.phases import PhaseLog
from launcher.puller import PullManager
from launcher.registry_client import PullError, familiar_name, host_arch
from launcher.store import Store

API_VERSION = "1.41"


def normalise_ref(name: str, tag: str = "") -> str:
    """`name[:tag]` in the familiar form with a tag (`latest` when none is given)."""
    name = familiar_name(name)
    if tag:
        return f"{name}:{tag}"
    return name if ":" in name.split("/")[-1] else f"{name}:latest"


class Daemon:
    def __init__(self, root: Path, default_registry: str, max_concurrent_downloads: int = 3):
        self.root = Path(root)
        self.store = Store(self.root)
        self.phases = PhaseLog()
        self.puller = PullManager(self.store, self.phases, default_registry, max_concurrent_downloads)
        self.containers = ContainerManager(self.store, self.phases)
        self.default_registry = default_registry
        self.router = self._routes()
        self.server = None

    def _routes(self) -> Router:
        r = Router()
        r.add("GET", "/_ping", lambda req: "OK")
        r.add("GET", "/version", self.version)
        r.add("GET", "/info", self.info)
        r.add("POST", "/images/create", self.pull)
        r.add("GET", "/images/json", self.list_images)
        r.add("GET", "/images/{name*}/json", self.inspect_image)
        r.add("DELETE", "/images/{name*}", self.remove_image)
        r.add("POST", "/containers/create", self.create)
        r.add("GET", "/containers/json", self.list_containers)
        r.add("GET", "/containers/{id}/json", lambda req: self.inspect(self._container(req)))
        r.add("POST", "/containers/{id}/start", self.start)
        r.add("POST", "/containers/{id}/attach", self.attach)
        r.add("POST", "/containers/{id}/wait", self.wait)
        r.add("GET", "/containers/{id}/logs", self.logs)
        r.add("POST", "/containers/{id}/stop", self.stop)
        r.add("POST", "/containers/{id}/kill", self.kill)
        r.add("DELETE", "/containers/{id}", self.remove)
        r.add("GET", "/docksim/phases", lambda req: {"events": self.phases.take(req.arg("request"))})
        return r

    # -- system -----------------------------------------------------------
    def version(self, req: Request) -> dict:
        return {"Platform": {"Name": "docksim"}, "Version": VERSION, "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24", "GitCommit": "", "GoVersion": f"python{platform.python_version()}",
                "Os": "linux", "Arch": host_arch(), "KernelVersion": platform.release(),
                "BuildTime": "", "Components": [{"Name": "Engine", "Version": VERSION, "Details": {
                    "ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Os": "linux",
                    "Arch": host_arch(), "KernelVersion": platform.release(),
                    "GoVersion": f"python{platform.python_version()}", "GitCommit": "",
                    "BuildTime": "", "Experimental": "false"}}]}

    def info(self, req: Request) -> dict:
        containers = self.containers.all()
        running = sum(c.status == "running" for c in containers)
        return {"ID": "docksim", "Name": socket.gethostname(), "ServerVersion": VERSION,
                "Containers": len(containers), "ContainersRunning": running,
                "ContainersPaused": 0, "ContainersStopped": len(containers) - running,
                "Images": len(self.store.list_images()), "Driver": "overlay",
                "DockerRootDir": str(self.root), "OSType": "linux", "OperatingSystem": "docksim",
                "Architecture": platform.machine(), "NCPU": os.cpu_count(),
                "KernelVersion": platform.release(), "CgroupDriver": "cgroupfs",
                "RegistryConfig": {"Mirrors": [self.default_registry]}}

    # -- images -----------------------------------------------------------
    def pull(self, req: Request) -> None:
        """`POST /images/create`: progress as a stream of JSON messages.  As in
        dockerd, a pull that fails before its first message (an unknown image,
        an unreachable registry) is an HTTP error; later failures end the stream
        with an `error` message."""
        if not req.arg("fromImage"):
            raise ApiError(400, "fromImage is required (docksim does not import images)")
        ref = normalise_ref(req.arg("fromImage"), req.arg("tag"))
        stream = None

        def progress(message: dict) -> None:
            nonlocal stream
            if stream is None:  # the first message comes from this thread
                stream = req.start_stream("application/json")
            stream.json(message)

        try:
            self.puller.pull(ref, req.request_tag, progress)
        except PullError as exc:
            if stream is None:
                raise ApiError(exc.status, str(exc)) from None
            stream.json({"errorDetail": {"message": str(exc)}, "error": str(exc)})

    def _image(self, name: str) -> dict:
        image = self.store.get_image(name) or self.store.get_image(normalise_ref(name))
        if image is None:
            raise ApiError(404, f"No such image: {name}")
        return image

    def list_images(self, req: Request) -> list[dict]:
        return [{"Id": i["id"], "ParentId": "", "RepoTags": [i["ref"]],
                 "RepoDigests": [f"{i['ref'].rsplit(':', 1)[0]}@{i['manifest_digest']}"],
                 "Created": int(i.get("created", 0)), "Size": i["size"], "VirtualSize": i["size"],
                 "SharedSize": -1, "Labels": {}, "Containers": -1}
                for i in self.store.list_images()]

    def inspect_image(self, req: Request) -> dict:
        image = self._image(req.params["name"])
        config = image["config"]
        return {"Id": image["id"], "RepoTags": [image["ref"]],
                "RepoDigests": [f"{image['ref'].rsplit(':', 1)[0]}@{image['manifest_digest']}"],
                "Parent": "", "Comment": "", "Created": config.get("created", rfc3339(None)),
                "Config": config.get("config", {}), "Architecture": config.get("architecture", ""),
                "Os": config.get("os", "linux"), "Size": image["size"], "VirtualSize": image["size"],
                "GraphDriver": {"Name": "overlay", "Data": {}},
                "RootFS": {"Type": "layers", "Layers": image["diff_ids"]}}

    def remove_image(self, req: Request) -> list[dict]:
        image = self._image(req.params["name"])
        if not req.flag("force") and self.containers.image_in_use(image["id"]):
            raise ApiError(409, f"conflict: unable to remove repository reference "
                           f"\"{image['ref']}\" (must force) - image is being used by a container")
        try:
            removed = self.store.remove_image(image["ref"])
        except KeyError:  # removed by another request meanwhile
            raise ApiError(404, f"No such image: {req.params['name']}") from None
        answer = [{"Untagged": ref} for ref in removed["untagged"]]
        if removed["deleted"]:
            answer.append({"Deleted": removed["id"]})
            answer += [{"Deleted": diff_id} for diff_id in removed["removed_layers"]]
        return answer

    # -- containers -------------------------------------------------------
    def _container(self, req: Request) -> Container:
        return self.containers.get(req.params["id"])

    def create(self, req: Request):
        container = self.containers.create(req.json(), req.arg("name"), req.request_tag)
        return 201, {"Id": container.id, "Warnings": []}

    def start(self, req: Request) -> None:
        self.containers.start(self._container(req), req.request_tag)

    def wait(self, req: Request) -> None:
        """`POST /containers/{id}/wait?condition=`: `not-running` (the default)
        answers at once unless the container runs, `next-exit` waits for its exit
        (the CLI asks before it starts the container), `removed` for its removal
        (`docker run --rm`).  As dockerd does, the status line and headers go out
        at once and the body when the condition is met: the docker CLI's wait
        call returns only with the headers, and it starts the container after."""
        container = self._container(req)
        condition = req.arg("condition") or "not-running"
        events = {"not-running": container.exited if container.status == "running" else None,
                  "next-exit": container.exited, "removed": container.removed}
        if condition not in events:
            raise ApiError(400, f"invalid condition: {condition!r}")
        stream = req.start_stream("application/json")
        if events[condition] is not None:
            events[condition].wait()
        stream.json({"StatusCode": container.exit_code, "Error": None})

    def stop(self, req: Request) -> None:
        container = self._container(req)
        timeout = req.arg("t") or req.arg("timeout")
        self.containers.stop(container, float(timeout) if timeout else 10.0)

    def kill(self, req: Request) -> None:
        """`docker kill [-s SIGNAL]`: one signal to the container's PID 1 (SIGKILL by
        default, which is waited for, as dockerd does); 409 if it is not running."""
        container = self._container(req)
        if container.status != "running":
            raise ApiError(409, f"Cannot kill container: {container.id[:12]}: "
                           f"container {container.id} is not running")
        name = req.arg("signal") or "SIGKILL"
        try:
            sig = (signal.Signals(int(name)) if name.isdigit()
                   else signal.Signals["SIG" + name.upper().removeprefix("SIG")])
        except (KeyError, ValueError):
            raise ApiError(400, f"Invalid signal: {name}") from None
        container.process.kill(sig)
        if sig == signal.SIGKILL:
            container.exited.wait(10.0)

    def remove(self, req: Request) -> None:
        self.containers.remove(self._container(req), req.flag("force"), req.request_tag)

    def logs(self, req: Request) -> None:
        """The container's output as Docker's multiplexed stream (8-byte frame
        headers: stream 1 = stdout); with follow, until the container exits.
        docksim keeps stdout and stderr in one file: all of it is stream 1."""
        container = self._container(req)
        stream = req.start_stream("application/vnd.docker.raw-stream")
        self._copy_output(container, stream, req.flag("follow"))

    def attach(self, req: Request) -> None:
        """`POST /containers/{id}/attach`: the `docker run` CLI attaches before it
        starts the container and reads its output on the hijacked connection
        until the container exits.  With `logs=1` the output so far comes first;
        stdin is not supported (no `-i`)."""
        container = self._container(req)
        if req.flag("stdin"):
            raise ApiError(501, "docksim does not attach stdin (docker run -i)")
        stream = req.hijack("application/vnd.docker.raw-stream")
        if not (req.flag("stdout") or req.flag("stderr")):
            return
        offset = 0
        if not req.flag("logs") and container.status != "created":
            offset = container.log_path.stat().st_size if container.log_path.exists() else 0
        self._copy_output(container, stream, req.flag("stream"), offset)

    @staticmethod
    def _copy_output(container: Container, stream, follow: bool, offset: int = 0) -> None:
        try:
            handle = open(container.log_path, "rb")
        except FileNotFoundError:
            return
        with handle:
            handle.seek(offset)
            while True:
                done = container.exited.is_set() or container.removed.is_set() or not follow
                data = handle.read()
                if data:
                    stream.write(b"\x01\x00\x00\x00" + len(data).to_bytes(4, "big") + data)
                if done or stream.broken:
                    return
                container.exited.wait(0.01)

    def inspect(self, c: Container) -> dict:
        state = {"Status": c.status, "Running": c.status == "running", "Paused": False,
                 "Restarting": False, "OOMKilled": False, "Dead": False,
                 "Pid": c.process.pid if c.process and c.status == "running" else 0,
                 "ExitCode": c.exit_code, "Error": "", "StartedAt": rfc3339(c.started_s),
                 "FinishedAt": rfc3339(c.finished_s)}
        host_config = {"LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "none",
                       **c.host_config}
        return {"Id": c.id, "Created": rfc3339(c.created_s), "Path": c.argv[0], "Args": c.argv[1:],
                "State": state, "Image": c.image["id"], "Name": f"/{c.name}", "RestartCount": 0,
                "Driver": "overlay", "Platform": "linux", "HostConfig": host_config,
                "Config": {"Hostname": c.hostname, "User": c.user, "Env": c.env, "Cmd": c.argv,
                           "Image": c.image_name, "WorkingDir": c.cwd, "Entrypoint": None,
                           "Labels": {}, "Tty": False, "OpenStdin": False},
                "NetworkSettings": {"Networks": {}}, "Mounts": []}

    def list_containers(self, req: Request) -> list[dict]:
        show_all = req.flag("all")
        out = []
        for c in self.containers.all():
            if c.status != "running" and not show_all:
                continue
            if c.status == "running":
                status = f"Up {int(time.time() - c.started_s)} seconds"
            elif c.status == "exited":
                status = f"Exited ({c.exit_code}) {int(time.time() - c.finished_s)} seconds ago"
            else:
                status = "Created"
            out.append({"Id": c.id, "Names": [f"/{c.name}"], "Image": c.image_name,
                        "ImageID": c.image["id"], "Command": " ".join(c.argv),
                        "Created": int(c.created_s), "State": c.status, "Status": status,
                        "Ports": [], "Labels": {}, "HostConfig": {"NetworkMode": "none"},
                        "NetworkSettings": {"Networks": {}}, "Mounts": []})
        return out

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
