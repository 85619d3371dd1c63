"""docksim's real engine: a daemon speaking the Docker Engine API, its pull
manager, content store and a container runtime on namespaces and overlayfs."""

VERSION = "0.1.0"
