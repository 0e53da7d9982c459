"""A generated collection of maintenance reports: enough documents (titles, several sentences each) for
``rag adapt`` to make and hold out pseudo-queries, small enough to index in seconds."""

from __future__ import annotations

import random

from rag.types import Doc

METALS = "copper zinc nickel cobalt iron tin lead silver gold platinum lithium sodium".split()
PARTS = "bridge tower engine valve pump turbine boiler cable rail furnace reactor crane".split()
FAULTS = "corrosion fatigue vibration overheating leakage cracking wear noise drift".split()


def reports(n: int = 130, seed: int = 1) -> list[Doc]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        metal, part, fault = rng.choice(METALS), rng.choice(PARTS), rng.choice(FAULTS)
        text = (
            f"The {metal} {part} at site {i} showed {fault} after {rng.randint(2, 90)} days of service. "
            f"Engineers traced the {fault} to a faulty {rng.choice(PARTS)} made of {rng.choice(METALS)}. "
            f"Repairs on the {part} took {rng.randint(1, 30)} hours and cost {rng.randint(100, 9000)} dollars. "
            f"Inspectors now check every {part} for {fault} each {rng.choice(['week', 'month', 'quarter'])}."
        )
        out.append(Doc(text, id=f"r{i}", meta={"title": f"{metal.title()} {part} {fault} report number {i}"}))
    return out
