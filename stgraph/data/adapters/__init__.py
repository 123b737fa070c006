"""Adapters: one module per on-disk format, each registered under the card's ``format`` name.

An adapter is a function ``(card, data_dir) -> RawDataset``. It validates what it reads and raises
`InputError` naming the file and the problem. Importing this package registers every adapter.
"""

from stgraph.data.adapters.base import ADAPTERS, RawDataset, observed_mask

__all__ = ["ADAPTERS", "RawDataset", "observed_mask"]
