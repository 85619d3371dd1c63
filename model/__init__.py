"""The simulated world: a SimPy model of Docker's client, daemon and registry link.

``simulate(scenario)`` predicts every phase of every request as trace rows
(``vocab.trace.PhaseRow``); ``Costs`` holds every timing constant it assumes.
The model never imports the real engine: only the shared vocabulary.
"""
from model.costs import Costs
from model.simulation import simulate

__all__ = ["Costs", "simulate"]
