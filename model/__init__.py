"""The simulated world: a SimPy model of Docker's clients, daemons, registry and network.

One node behind one link, or a cluster: nodes, switches, mirrors and peers
as a graph whose links are shared max-min fairly (``model/flows.py``).

``simulate(scenario)`` predicts every phase of every request as trace rows
(``vocab.trace.PhaseRow``); ``Costs`` holds every timing constant it assumes.
The model never imports the real engine: only the shared vocabulary.
"""
from model.costs import Costs
from model.simulation import simulate

__all__ = ["Costs", "simulate"]
