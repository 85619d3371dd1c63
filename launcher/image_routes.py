"""The Engine API's image endpoints: pull, list, inspect, remove, tag, push.

Pull and push answer with Docker's JSON progress stream; a failure before the
first message is an HTTP error (404 for an image the registry or the store does
not know), a later one ends the stream with an `error` message, as with dockerd.
Each successful action is published as a Docker event (pull, push, tag, untag,
delete).
"""
from __future__ import annotations

import re

from launcher.containers import ContainerManager, rfc3339
from launcher.events import EventLog
from launcher.http import ApiError, Request, Router
from launcher.puller import PullManager
from launcher.pusher import Pusher, PushError
from launcher.registry_client import PullError, familiar_name
from launcher.store import Store

# Docker's reference grammar: [host[:port]/]path-component(/path-component)*
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")


def normalise_ref(name: str, tag: str = "") -> str:
    """`name[:tag]` in the familiar form with a tag (`latest` when none is given)."""
    name = familiar_name(name)
    if tag:
        return f"{name}:{tag}"
    return name if ":" in name.split("/")[-1] else f"{name}:latest"


def _repository(ref: str) -> str:
    return ref.rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref


class ImageApi:
    def __init__(self, store: Store, puller: PullManager, pusher: Pusher,
                 containers: ContainerManager, events: EventLog):
        self.store = store
        self.puller = puller
        self.pusher = pusher
        self.containers = containers
        self.events = events

    def register(self, r: Router) -> None:
        r.add("POST", "/images/create", self.pull)
        r.add("GET", "/images/json", self.list)
        r.add("GET", "/images/{name*}/json", self.inspect)
        r.add("POST", "/images/{name*}/tag", self.tag)
        r.add("POST", "/images/{name*}/push", self.push)
        r.add("DELETE", "/images/{name*}", self.remove)

    def _image(self, name: str) -> dict:
        image = self.store.get_image(name) or self.store.get_image(normalise_ref(name))
        if image is None:
            raise ApiError(404, f"No such image: {name}")
        return image

    @staticmethod
    def _progress_stream(req: Request, first_failure: type, run) -> None:
        """Run ``run(progress)``; the stream starts with the first message."""
        stream = None

        def progress(message: dict) -> None:
            nonlocal stream
            if stream is None:  # the first message comes from the request's thread
                stream = req.start_stream("application/json")
            stream.json(message)

        try:
            run(progress)
        except first_failure as exc:
            if stream is None:
                raise ApiError(getattr(exc, "status", 500), str(exc)) from None
            stream.json({"errorDetail": {"message": str(exc)}, "error": str(exc)})

    def pull(self, req: Request) -> None:
        """`POST /images/create?fromImage=&tag=`: `docker pull`."""
        if not req.arg("fromImage"):
            raise ApiError(400, "fromImage is required (docksim does not import images)")
        ref = normalise_ref(req.arg("fromImage"), req.arg("tag"))

        def run(progress) -> None:
            self.puller.pull(ref, req.request_tag, progress)
            self.events.publish("image", "pull", ref, name=_repository(ref))

        self._progress_stream(req, PullError, run)

    def push(self, req: Request) -> None:
        """`POST /images/{name}/push?tag=`: `docker push`; without a tag, every tag
        of the repository, as dockerd does."""
        name = familiar_name(req.params["name"])
        if req.arg("tag"):
            refs = [f"{name}:{req.arg('tag')}"]
        else:
            refs = sorted(t for i in self.store.list_images() for t in i.get("repo_tags", [])
                          if _repository(t) == name)
            if not refs:
                raise ApiError(404, f"An image does not exist locally with the tag: {name}")

        def run(progress) -> None:
            for ref in refs:
                self.pusher.push(ref, progress)
                self.events.publish("image", "push", ref, name=name)

        self._progress_stream(req, PushError, run)

    def tag(self, req: Request):
        """`POST /images/{name}/tag?repo=&tag=`: one more name for an image (201)."""
        image = self._image(req.params["name"])
        repo, tag = familiar_name(req.arg("repo")), req.arg("tag") or "latest"
        if not _REPO_RE.fullmatch(repo) or not _TAG_RE.fullmatch(tag):
            raise ApiError(400, f"invalid reference format: {req.arg('repo')}:{tag}")
        self.store.put_image(f"{repo}:{tag}", {k: v for k, v in image.items()
                                               if k not in ("repo_tags", "ref")} | {"ref": f"{repo}:{tag}"})
        self.events.publish("image", "tag", image["id"], name=f"{repo}:{tag}")
        return 201, ""

    def list(self, req: Request) -> list[dict]:
        out = []
        for i in self.store.list_images():
            tags = i.get("repo_tags") or []
            digests = [f"{_repository(t)}@{i['manifest_digest']}" for t in tags[:1]]
            out.append({"Id": i["id"], "ParentId": "", "RepoTags": tags or ["<none>:<none>"],
                        "RepoDigests": digests or ["<none>@<none>"],  # dockerd's dangling image
                        "Created": int(i.get("created", 0)), "Size": i["size"],
                        "VirtualSize": i["size"], "SharedSize": -1, "Labels": {}, "Containers": -1})
        return out

    def inspect(self, req: Request) -> dict:
        image = self._image(req.params["name"])
        config = image["config"]
        tags = image.get("repo_tags") or []
        return {"Id": image["id"], "RepoTags": tags,
                "RepoDigests": [f"{_repository(t)}@{image['manifest_digest']}" for t in tags[:1]],
                "Parent": "", "Comment": "", "Created": config.get("created", rfc3339(None)),
                "Config": config.get("config", {}), "Architecture": config.get("architecture", ""),
                "Os": config.get("os", "linux"), "Size": image["size"], "VirtualSize": image["size"],
                "GraphDriver": {"Name": "overlay", "Data": {}},
                "RootFS": {"Type": "layers", "Layers": image["diff_ids"]}}

    def remove(self, req: Request) -> list[dict]:
        image = self._image(req.params["name"])
        if not req.flag("force") and self.containers.image_in_use(image["id"]):
            raise ApiError(409, f"conflict: unable to remove repository reference "
                           f"\"{image['ref']}\" (must force) - image is being used by a container")
        try:
            removed = self.store.remove_image(image["ref"])
        except KeyError:  # removed by another request meanwhile
            raise ApiError(404, f"No such image: {req.params['name']}") from None
        answer = [{"Untagged": ref} for ref in removed["untagged"]]
        for ref in removed["untagged"]:
            self.events.publish("image", "untag", removed["id"], name=ref)
        if removed["deleted"]:
            answer.append({"Deleted": removed["id"]})
            answer += [{"Deleted": diff_id} for diff_id in removed["removed_layers"]]
            self.events.publish("image", "delete", removed["id"], name=removed["id"])
        return answer
