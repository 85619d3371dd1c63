"""The Engine API's container endpoints, with dockerd's JSON shapes and codes.

`docker run` is several of these: `POST /containers/create` (404 when the image
is missing, after which the client pulls and tries again), `attach` on a
hijacked connection, `wait?condition=next-exit|removed`, `start`; `docker logs`,
`ps`, `inspect`, `stop`, `kill`, `wait` and `rm` are one call each.  The output
of attach and logs is Docker's multiplexed stream, built by ``launcher.logs``.
"""
from __future__ import annotations

import time

from launcher import logs
from launcher.containers import Container, ContainerManager, parse_signal, rfc3339
from launcher.create_config import check_create_body
from launcher.events import parse_filters, parse_time
from launcher.http import ApiError, Request, Router

RAW_STREAM = "application/vnd.docker.raw-stream"
WAIT_POLL_S = 0.5  # how often a blocked `wait` looks whether its client is still there


def _human(seconds: float) -> str:
    """The duration words `docker ps` shows (Go's units.HumanDuration, roughly)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if s >= size:
            n = s // size
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return f"{s} seconds"


class ContainerApi:
    def __init__(self, containers: ContainerManager):
        self.containers = containers

    def register(self, r: Router) -> None:
        r.add("POST", "/containers/create", self.create)
        r.add("GET", "/containers/json", self.list)
        r.add("GET", "/containers/{id}/json", lambda req: self.inspect(self._get(req)))
        r.add("POST", "/containers/{id}/start", self.start)
        r.add("POST", "/containers/{id}/attach", self.attach)
        r.add("POST", "/containers/{id}/wait", self.wait)
        r.add("GET", "/containers/{id}/logs", self.logs)
        r.add("POST", "/containers/{id}/stop", self.stop)
        r.add("POST", "/containers/{id}/kill", self.kill)
        r.add("DELETE", "/containers/{id}", self.remove)

    def _get(self, req: Request) -> Container:
        return self.containers.get(req.params["id"])

    def create(self, req: Request):
        body = req.json()
        check_create_body(body)
        container, warnings = self.containers.create(body, req.arg("name"), req.request_tag)
        return 201, {"Id": container.id, "Warnings": warnings}

    def start(self, req: Request):
        container = self._get(req)
        if container.status == "running":
            return 304, ""  # dockerd: "container already started"
        self.containers.start(container, req.request_tag)

    def wait(self, req: Request) -> None:
        """`POST /containers/{id}/wait?condition=`: `not-running` (the default)
        answers at once unless the container runs, `next-exit` waits for its exit
        (the CLI asks before it starts the container), `removed` for its removal
        (`docker run --rm`).  As dockerd does, the status line and headers go out
        at once and the body when the condition is met: the docker CLI's wait
        call returns only with the headers, and it starts the container after."""
        container = self._get(req)
        condition = req.arg("condition") or "not-running"
        # `exited` is set only once the exit is saved; the status turns "exited" a
        # moment earlier, so it must not decide: a caller told of the exit may
        # kill the daemon next, and the record must already say so
        events = {"not-running": None if container.status == "created" else container.exited,
                  "next-exit": container.exited, "removed": container.removed}
        if condition not in events:
            raise ApiError(400, f"invalid condition: {condition!r}")
        stream = req.start_stream("application/json")
        while events[condition] is not None and not events[condition].wait(WAIT_POLL_S):
            if req.client_hung_up():
                return  # as dockerd cancels the wait: no thread left behind for ever
        error = {"Message": container.error} if container.error else None
        stream.json({"StatusCode": container.exit_code, "Error": error})

    def stop(self, req: Request):
        container = self._get(req)
        timeout = req.number("t") if req.arg("t") else req.number("timeout")
        if req.arg("signal"):  # API 1.42: the signal replaces the stop signal once
            container.stop_signal = req.arg("signal")
            parse_signal(container.stop_signal)
        if not self.containers.stop(container, timeout):
            return 304, ""  # dockerd: "container already stopped", not an error

    def kill(self, req: Request) -> None:
        """`docker kill [-s SIGNAL]`: one signal to the container's PID 1 (SIGKILL by
        default, which is waited for, as dockerd does); 409 if it is not running."""
        container = self._get(req)
        if container.status != "running":
            raise ApiError(409, f"Cannot kill container: {container.id[:12]}: "
                           f"container {container.id} is not running")
        self.containers.kill(container, parse_signal(req.arg("signal") or "SIGKILL"))

    def remove(self, req: Request) -> None:
        self.containers.remove(self._get(req), req.flag("force"), req.request_tag)

    def logs(self, req: Request) -> None:
        """`docker logs`: stdout and stderr as frames of stream 1 and 2; with
        `follow`, until the container exits; `tail`, `since`, `until` and
        `timestamps` as dockerd reads them from its json-file log."""
        container = self._get(req)
        if not (req.flag("stdout") or req.flag("stderr")):
            raise ApiError(400, "Bad parameters: you must choose at least one stream")
        tail = req.arg("tail", "all")
        try:
            selection = logs.Selection(
                stdout=req.flag("stdout"), stderr=req.flag("stderr"),
                since_ns=parse_time(req.arg("since")), until_ns=parse_time(req.arg("until")),
                timestamps=req.flag("timestamps"),
                tail=int(tail) if tail not in ("", "all") else -1)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        stream = req.start_stream(RAW_STREAM)
        logs.copy_output(container.log_path, stream, selection, req.flag("follow"),
                         container.exited, alive=lambda: not req.client_gone())

    def attach(self, req: Request) -> None:
        """`POST /containers/{id}/attach`: the `docker run` CLI attaches before it
        starts the container and reads its output on the hijacked connection
        until the container exits.  With `logs=1` the output so far comes first;
        stdin is not supported (no `-i`)."""
        container = self._get(req)
        if req.flag("stdin"):
            raise ApiError(501, "docksim does not attach stdin (docker run -i)")
        stream = req.hijack(RAW_STREAM)
        if not (req.flag("stdout") or req.flag("stderr")):
            return
        offset = 0
        if not req.flag("logs") and container.status != "created":
            offset = logs.end_offset(container.log_path)
        selection = logs.Selection(stdout=req.flag("stdout"), stderr=req.flag("stderr"))
        # a client that hangs up ends the attach, even when the container
        # writes nothing (or never starts): dockerd ends it with the connection
        logs.copy_output(container.log_path, stream, selection, req.flag("stream"),
                         container.exited, offset, alive=lambda: not req.client_hung_up())

    def inspect(self, c: Container) -> dict:
        state = {"Status": c.status, "Running": c.status == "running", "Paused": False,
                 "Restarting": False, "OOMKilled": c.oom_killed, "Dead": False,
                 "Pid": c.process.init_pid if c.process and c.status == "running" else 0,
                 "ExitCode": c.exit_code, "Error": c.error, "StartedAt": rfc3339(c.started_s),
                 "FinishedAt": rfc3339(c.finished_s)}
        limits = c.limits
        host_config = {"LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "none",
                       "AutoRemove": False, **c.host_config,
                       "Memory": limits.memory, "MemorySwap": limits.memory_swap,
                       "PidsLimit": limits.pids or None,
                       "NanoCpus": int(c.host_config.get("NanoCpus") or 0),
                       "CpuQuota": limits.cpu_quota_us if not c.host_config.get("NanoCpus") else 0,
                       "CpuPeriod": int(c.host_config.get("CpuPeriod") or 0)}
        return {"Id": c.id, "Created": rfc3339(c.created_s), "Path": c.argv[0], "Args": c.argv[1:],
                "State": state, "Image": c.image["id"], "Name": f"/{c.name}", "RestartCount": 0,
                "Driver": "overlay", "Platform": "linux", "LogPath": str(c.log_path),
                "HostConfig": host_config,
                "Config": {"Hostname": c.hostname, "User": c.user, "Env": c.env, "Cmd": c.argv,
                           "Image": c.image_name, "WorkingDir": c.cwd, "Entrypoint": None,
                           "Labels": c.labels, "StopSignal": c.stop_signal, "Tty": False,
                           "OpenStdin": False, "AttachStdout": False, "AttachStderr": False},
                "NetworkSettings": {"Networks": {}}, "Mounts": []}

    def list(self, req: Request) -> list[dict]:
        """`docker ps [-a]`, with the filters `status`, `id`, `name` and `limit`."""
        try:
            filters = parse_filters(req.arg("filters"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        show_all = req.flag("all") or "status" in filters
        limit = int(req.number("limit", -1))
        out = []
        now = time.time()
        for c in self.containers.all():
            if (c.status != "running" and not show_all
                    or "status" in filters and c.status not in filters["status"]
                    or "id" in filters and not any(c.id.startswith(i) for i in filters["id"])
                    or "name" in filters and not any(n.lstrip("/") in c.name for n in filters["name"])):
                continue
            if c.status == "running":
                status = f"Up {_human(now - c.started_s)}"
            elif c.status == "exited":
                status = f"Exited ({c.exit_code}) {_human(now - c.finished_s)} ago"
            else:
                status = "Created"
            out.append({"Id": c.id, "Names": [f"/{c.name}"], "Image": c.image_name,
                        "ImageID": c.image["id"], "Command": " ".join(c.argv),
                        "Created": int(c.created_s), "State": c.status, "Status": status,
                        "Ports": [], "Labels": c.labels, "HostConfig": {"NetworkMode": "none"},
                        "NetworkSettings": {"Networks": {}}, "Mounts": []})
        return out if limit < 0 else out[:limit]
