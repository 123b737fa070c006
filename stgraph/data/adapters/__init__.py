"""Adapters: one module per on-disk format, each registered under the card's ``format`` name.

An adapter is a function ``(card, data_dir) -> RawDataset``. It validates what it reads and raises
`InputError` naming the file and the problem. Importing this package registers every module of
this package, and the simulator (the embedded default dataset), on the first look-up.
"""

from stgraph.data.adapters.base import ADAPTERS, RawDataset, observed_mask

__all__ = ["ADAPTERS", "RawDataset", "observed_mask"]
