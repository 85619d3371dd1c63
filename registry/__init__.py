"""docksim's real registry: an image builder and an OCI distribution server.

`build_images` turns a scenario's images into blobs, manifests and tags under a
registry root; `RegistryServer` serves that root over HTTP on a loopback port,
shaping responses with an emulated link (latency per request, one shared
bandwidth).  `python -m registry serve|build` does the same from a shell.

Modules: layout (the root on disk), content + gzipstream + userland (layer
bytes), builder (images), variants (the same image in other formats), api (the
distribution API: pull), push + uploads + manifests (push), responses (errors),
tokens (token auth), httpbody (request bodies), link (the emulated network),
faults (deliberate failures for tests), server (HTTP), processes (docksim's and
the CNCF registry as processes, for interop tests and benchmarks).
"""
from registry.builder import BuildReport, BuiltImage, BuiltLayer, build_images
from registry.server import RegistryServer

__all__ = ["BuildReport", "BuiltImage", "BuiltLayer", "RegistryServer", "build_images"]
