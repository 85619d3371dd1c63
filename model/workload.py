"""What the clients ask for: scenario steps turned into client processes.

Mapping of a step onto nodes and clients (and so onto request ids):

* A step runs on every node its ``node`` glob matches (default: the first
  node), in declaration order, with ``clients`` clients on each.  The client
  with index ``c = position_of_node * clients + k`` is the k-th client on
  that node, so client indices stay unique within the step and request ids
  ``s<step>-c<client>-r<repeat>`` stay unique within a replication; the
  trace's ``node`` column names the node.
* ``arrivals = "fixed"``: each client sends its command at ``at_s``, then
  ``repeat`` times in a row, each after the previous one answered.
* ``arrivals = "poisson"``: each client's requests arrive as a Poisson process
  of ``rate_per_s`` during [at_s, at_s + duration_s), independent of how long
  earlier ones take (an open workload: several may be in flight at once);
  ``repeat`` in the request id is the arrival's number.
* ``images``: each request picks one, ``uniform``ly or by ``zipf``
  popularity, P(rank k) = k^-s / sum_j j^-s with s = ``zipf_s``, rank 1 the
  first listed image.

Random draws come from streams per step and client (``stream(purpose)``), so
adding a step or a node does not shift the draws of the others.
"""
from __future__ import annotations

import itertools
import random
from typing import Callable

import simpy

from model.client import Client
from model.costs import Costs
from model.recorder import Request
from model.world import World
from vocab.scenario import Scenario, Step


class ImagePicker:
    """Chooses each request's image among a step's images."""

    def __init__(self, step: Step, rng: random.Random):
        self.choices = step.choices
        self.rng = rng
        if step.popularity == "zipf":
            weights = [rank ** -step.zipf_s for rank in range(1, len(self.choices) + 1)]
        else:
            weights = [1.0] * len(self.choices)
        self.cumulative = list(itertools.accumulate(weights))

    def pick(self) -> str:
        if len(self.choices) == 1:
            return self.choices[0]
        return self.rng.choices(self.choices, cum_weights=self.cumulative)[0]


def start_clients(env: simpy.Environment, world: World, scenario: Scenario, costs: Costs,
                  replication: int, rows: list, stream: Callable[[str], random.Random]) -> None:
    """One process per client of every step."""
    for step_index, step in enumerate(scenario.steps):
        for position, node in enumerate(step.nodes):
            for k in range(step.clients):
                index = position * step.clients + k
                client = Client(env, world.daemons[node], costs, step.retries)
                picker = ImagePicker(step, stream(f"images/{step_index}/{index}")
                                     if len(step.choices) > 1 else random.Random(0))

                def request(repeat: int, node=node, index=index, step_index=step_index,
                            step=step, picker=picker) -> Request:
                    return Request(replication, step_index, index, repeat, step.command,
                                   picker.pick(), rows, node)
                if step.arrivals == "poisson":
                    env.process(_poisson(env, client, step, request,
                                          stream(f"arrivals/{step_index}/{index}")))
                else:
                    env.process(_fixed(env, client, step, request))


def _send(env: simpy.Environment, client: Client, step: Step, request: Request):
    sent_s = env.now
    yield from client.command(request, step)
    request.record("request", sent_s, env.now)


def _fixed(env, client, step, request):
    """At ``at_s`` the client sends its command ``repeat`` times in a row."""
    yield env.timeout(step.at_s)
    for repeat in range(step.repeat):
        yield from _send(env, client, step, request(repeat))


def _poisson(env, client, step, request, rng: random.Random):
    """Requests arrive with exponential gaps; each runs on its own."""
    at_s = step.at_s
    end_s = step.at_s + step.duration_s
    for repeat in itertools.count():
        at_s += rng.expovariate(step.rate_per_s)
        if at_s >= end_s:
            return
        yield env.timeout(at_s - env.now)
        env.process(_send(env, client, step, request(repeat)))
