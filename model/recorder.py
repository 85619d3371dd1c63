"""Writing the trace: which request a phase belongs to, and its row.

Every phase the daemon performs is done on behalf of one client request (the
pull of a `docker run`, the download of a layer that pull needed), so the model
passes a ``Request`` down from the client into the daemon and each piece of
work writes its own row through it.  Rows use the vocabulary of ``vocab.trace``
so a simulated trace joins a measured one directly.
"""
from __future__ import annotations

from dataclasses import dataclass

from vocab.trace import PHASES, PhaseRow, request_id

SOURCE = "sim"
ENGINE = "model"
NODE = "node"  # the skeleton has one node; multi-node worlds will name theirs


@dataclass(frozen=True, eq=False)
class Request:
    """One client command: who sent it, and where its phase rows go."""

    replication: int
    step: int
    client: int
    repeat: int
    command: str
    image: str
    rows: list[PhaseRow]
    node: str = NODE

    @property
    def id(self) -> str:
        return request_id(self.step, self.client, self.repeat)

    def record(self, phase: str, start_s: float, end_s: float,
               layer: str = "", bytes_: int | None = None) -> None:
        """Append one phase row; times are simulated seconds from the scenario's start."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        self.rows.append(PhaseRow(
            source=SOURCE, engine=ENGINE, replication=self.replication, node=self.node,
            client=self.client, request=self.id, command=self.command, image=self.image,
            phase=phase, layer=layer, start_s=float(start_s), end_s=float(end_s), bytes=bytes_))
