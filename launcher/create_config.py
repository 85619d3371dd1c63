"""The JSON body of `POST /containers/create`, checked the way dockerd checks it.

dockerd decodes the body into Go structs (``container.Config`` with a
``HostConfig``), so a value of the wrong JSON type never reaches the daemon's
logic: ``json.Unmarshal`` fails and the client gets a 400 saying which field
wanted which type.  docksim reads the body as a Python dict; this module makes
the same promise for every field the daemon reads, so that a hostile or buggy
client gets a 400 naming the field, never a 500 from deep inside.
"""
from __future__ import annotations

from launcher.http import ApiError


def _kind(value) -> str:
    """The JSON kind of a decoded value, in Go's words."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "value")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# field -> (accepts the decoded value, Go type named in the error); null is always
# accepted: Go leaves the zero value
_STR = (lambda v: isinstance(v, str), "string")
_BOOL = (lambda v: isinstance(v, bool), "bool")
_INT = (_is_int, "int64")
_STRINGS = (_is_str_list, "[]string")
_STR_OR_STRINGS = (lambda v: isinstance(v, str) or _is_str_list(v), "strslice.StrSlice")
_LABELS = (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
           "map[string]string")
_OBJECT = (lambda v: isinstance(v, dict), "container.HostConfig")

CONFIG_FIELDS = {
    "Image": _STR, "Hostname": _STR, "User": _STR, "WorkingDir": _STR, "StopSignal": _STR,
    "Env": _STRINGS, "Cmd": _STR_OR_STRINGS, "Entrypoint": _STR_OR_STRINGS, "Labels": _LABELS,
    "OpenStdin": _BOOL, "AttachStdin": _BOOL, "AttachStdout": _BOOL, "AttachStderr": _BOOL,
    "Tty": _BOOL, "StopTimeout": _INT, "HostConfig": _OBJECT,
}
HOST_CONFIG_FIELDS = {
    "Memory": _INT, "MemorySwap": _INT, "NanoCpus": _INT, "CpuQuota": _INT, "CpuPeriod": _INT,
    "PidsLimit": _INT, "CapAdd": _STRINGS, "CapDrop": _STRINGS, "AutoRemove": _BOOL,
    "Privileged": _BOOL,
}


def _check(fields: dict, body: dict, struct: str) -> None:
    for key, (accepts, go_type) in fields.items():
        value = body.get(key)
        if value is not None and not accepts(value):
            raise ApiError(400, f"json: cannot unmarshal {_kind(value)} into Go struct field "
                                f"{struct}.{key} of type {go_type}")


def check_create_body(body: dict) -> None:
    """Raise ``ApiError(400)`` unless every field docksim reads has the JSON type
    dockerd's structs give it; an empty body is refused as dockerd refuses it."""
    if not body:
        raise ApiError(400, "Config cannot be empty in order to create a container")
    _check(CONFIG_FIELDS, body, "Config")
    _check(HOST_CONFIG_FIELDS, body.get("HostConfig") or {}, "HostConfig")
