"""The algorithm registry. Each algorithm is one module of plain torch math (no Ray import)
that ends with its registration, ``SPEC`` (``algos/interface.py``); the runtime looks it up
here by name and runs it on the data flow the spec names (``docs/design.md``).

Adding an algorithm: write its module and add it to ``_MODULES`` below; the config section,
the command line's help and ``--print-config`` follow from the spec.
"""

from __future__ import annotations

from distrl.algos import a2c, a3c, appo, dqn, impala, pg, ppo, qlearning
from distrl.algos.interface import AlgorithmSpec

_MODULES = (ppo, a2c, a3c, impala, appo, dqn, qlearning, pg)

ALGORITHMS: dict[str, AlgorithmSpec] = {module.SPEC.name: module.SPEC for module in _MODULES}

__all__ = ["ALGORITHMS", "AlgorithmSpec"]
