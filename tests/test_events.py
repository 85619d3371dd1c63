"""`GET /events` through the Docker SDK: Docker's message shape, the actions of a
container's and an image's life, `since`/`until` replay, live streaming, filters.
"""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import ALPHA, running_daemon


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    with running_daemon(registry.url, tmp_path_factory.mktemp("events-daemon")) as daemon:
        client = daemon.client()
        try:
            yield client
        finally:
            client.close()


def replay(client, since: float, **filters) -> list[dict]:
    """What happened from ``since`` until now (a bounded `docker events`)."""
    return list(client.events(since=since, until=time.time() + 0.05, decode=True,
                              filters=filters or None))


def test_message_shape_and_container_life(client):
    """create, start, die (with exitCode), destroy; each message with Type,
    Action, Actor, scope, time/timeNano and the old status/id/from fields."""
    client.images.pull("docksim-test/alpha", tag="1")
    since = time.time()
    client.containers.run(ALPHA, ["sh", "-c", "exit 5"], name="shape", detach=True).wait()
    client.containers.get("shape").remove()
    messages = replay(client, since, type="container")
    assert [m["Action"] for m in messages] == ["create", "start", "die", "destroy"]
    die = messages[2]
    assert die["Type"] == "container" and die["scope"] == "local"
    assert die["Actor"]["Attributes"] == {"image": ALPHA, "name": "shape", "exitCode": "5"}
    assert die["status"] == "die" and die["id"] == die["Actor"]["ID"] and die["from"] == ALPHA
    assert len(die["Actor"]["ID"]) == 64
    assert die["time"] == die["timeNano"] // 10**9
    assert since <= die["timeNano"] / 1e9 <= time.time()
    assert [m["timeNano"] for m in messages] == sorted(m["timeNano"] for m in messages)


def test_stop_kill_and_image_actions(client):
    """`docker stop` of a PID 1 that ignores SIGTERM: kill 15, kill 9, die, stop;
    pull, tag, untag and delete for images."""
    client.images.pull("docksim-test/alpha", tag="1")
    since = time.time()
    container = client.containers.run(ALPHA, ["sleep", "30"], detach=True)
    container.stop(timeout=0.2)
    container.remove()
    actions = [(m["Action"], m["Actor"]["Attributes"].get("signal"))
               for m in replay(client, since, container=container.id)]
    assert actions == [("create", None), ("start", None), ("kill", "15"), ("kill", "9"),
                       ("die", None), ("stop", None), ("destroy", None)]

    since = time.time()
    client.images.get(ALPHA).tag("docksim-test/events", "copy")
    client.images.remove("docksim-test/events:copy")
    client.images.remove(ALPHA)
    client.images.pull("docksim-test/alpha", tag="1")
    images = [(m["Action"], m["Actor"]["ID"], m["Actor"]["Attributes"]["name"])
              for m in replay(client, since, type="image")]
    image_id = client.images.get(ALPHA).id
    assert images == [("tag", image_id, "docksim-test/events:copy"),
                      ("untag", image_id, "docksim-test/events:copy"),
                      ("untag", image_id, ALPHA), ("delete", image_id, image_id),
                      ("pull", ALPHA, "docksim-test/alpha")]


def test_live_stream_with_filters_and_until(client):
    """Without `since` only new messages come; `until` in the future ends the
    stream then; a filter on the event keeps only `die`."""
    client.images.pull("docksim-test/alpha", tag="1")
    got: list[dict] = []
    until = time.time() + 1.5

    def listen() -> None:
        got.extend(client.events(until=until, decode=True, filters={"event": "die"}))

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.3)
    for code in (0, 1):
        client.containers.run(ALPHA, ["sh", "-c", f"exit {code}"], detach=True).wait()
    listener.join(timeout=10)
    assert not listener.is_alive()
    assert time.time() >= until
    assert [m["Actor"]["Attributes"]["exitCode"] for m in got] == ["0", "1"]
    for container in client.containers.list(all=True):
        container.remove()


def test_bad_query_is_400(client):
    answer = client.api.get(f"{client.api.base_url}/v1.41/events",
                            params={"since": "yesterday"})
    assert answer.status_code == 400
    assert "invalid timestamp" in answer.json()["message"]
