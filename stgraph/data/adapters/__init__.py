"""Adapters: one module per on-disk format, each registered under the card's ``format`` name.

An adapter is a function ``(card, data_dir) -> RawDataset``. It validates what it reads and raises
`InputError` naming the file and the problem. Every module of this package, and the simulator (the
embedded default dataset), registers itself when imported; `ADAPTERS` imports them on the first
lookup that needs them (see `Registry.defer_to`), so that importing `observed_mask` stays cheap.
"""

from stgraph.data.adapters.base import ADAPTERS, RawDataset, observed_mask

ADAPTERS.defer_to(__name__, "stgraph.data.simulator")

__all__ = ["ADAPTERS", "RawDataset", "observed_mask"]
