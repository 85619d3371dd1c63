"""One replication's world: the network, the registry, and a daemon on every node.

What it builds, from a scenario: the topology (``model/topology.py``) and its
flow network (``model/flows.py``); the registry server and, per
``[distribution] mode``, where blobs come from (the registry, pull-through
mirrors, or peers); then, for every node, dockerd -- its image store with
the node's cache capacity and the images cached at time 0, its pull manager
(download slots, extraction) and its API.  The one-node world of a scenario
without cluster tables is the special case of one node behind one link.

The address the registry sees for a node (its rate limit key) is the node's
own, or with ``[network] public_ips = K`` one of K shared addresses (NAT):
node i leaves through address i mod K.
"""
from __future__ import annotations

import random
from typing import Callable

import simpy

from model.costs import Costs
from model.daemon import Daemon
from model.flows import FlowNetwork
from model.p2p import Swarm
from model.pull import PullManager
from model.registry import RegistryServer
from model.sources import Fetcher, MirrorSource, RegistrySource
from model.store import ImageStore
from model.topology import Topology
from vocab.cluster import Registry
from vocab.scenario import MB, Scenario


class World:
    """Everything a replication's clients talk to."""

    def __init__(self, env: simpy.Environment, scenario: Scenario, costs: Costs,
                 stream: Callable[[str], random.Random]):
        self.env = env
        self.topology = topology = Topology(scenario, costs)
        names = topology.nodes
        ips = scenario.network.public_ips
        address = {name: (f"ip-{i % ips}" if ips else name) for i, name in enumerate(names)}
        self.registry = RegistryServer(env, scenario.registry, costs, stream("registry"))
        daemon_spec = scenario.daemon
        faults = scenario.registry.faults
        # a dripping body is capped by a private link: one per download slot in the world
        drip_lanes = ([topology.add_link(faults.drip_Bps)
                       for _ in range(len(names) * daemon_spec.max_concurrent_downloads)]
                      if faults.drip_rate and faults.any else [])
        # the network is created once every link exists (P2P adds upload slots)
        self.fetcher = Fetcher(env, topology, None, scenario.network.slow_start,  # type: ignore[arg-type]
                               daemon_spec.max_download_attempts, address,
                               backoff_s=daemon_spec.retry_backoff_s,
                               read_timeout_s=daemon_spec.read_timeout_s, drip_lanes=drip_lanes,
                               setup_rtts=(costs.tcp_setup_rtts_resolve, costs.tcp_setup_rtts_blob),
                               bulk_extra_rtts=costs.tcp_bulk_extra_rtts)
        mode = scenario.distribution.mode
        if mode == "p2p":
            self.source = Swarm(self.fetcher, self.registry, scenario.distribution)
        elif mode == "mirror":
            mirrors = {host: RegistryServer(env, Registry(), costs, stream(f"mirror/{host}"))
                       for host in sorted(set(topology.mirror_of.values()))}
            self.source = MirrorSource(self.fetcher, self.registry, mirrors)
        else:
            self.source = RegistrySource(self.fetcher, self.registry)
        self.network = self.fetcher.network = FlowNetwork(env, topology.capacity_Bps)

        images = {image.ref: image for image in scenario.images}
        layer_bytes = scenario.layer_bytes()
        bottom_layers = scenario.bottom_layers()
        self.daemons: dict[str, Daemon] = {}
        for group in scenario.nodes:
            capacity = None if group.cache_mb is None else group.cache_mb * MB
            for name in group.names():
                store = ImageStore(capacity, layer_bytes, self._forgetter(name))
                pulls = PullManager(env, costs, store, self.source, name,
                                    daemon_spec.max_concurrent_downloads,
                                    serial_extract=daemon_spec.extract == "serial",
                                    cores=daemon_spec.cores, userland_layers=bottom_layers)
                self.daemons[name] = Daemon(env, images, costs, store, pulls,
                                            api_workers=daemon_spec.api_workers)
                for ref in group.cached:
                    self._preload(name, store, images[ref])

    def _forgetter(self, node: str) -> Callable[[str], None]:
        return lambda layer: self.source.forget(node, layer)

    def _preload(self, node: str, store: ImageStore, image) -> None:
        """An image present at time 0, as if pulled before the scenario began."""
        for layer in image.layers:
            store.hold_layer(layer.name)
            store.add_layer(layer.name)
            if isinstance(self.source, Swarm):
                self.source.seed(node, layer)
        store.add_image(image)
        store.used(image.ref, 0.0)
        for layer in image.layers:
            store.release_layer(layer.name)
