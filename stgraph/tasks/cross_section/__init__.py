"""The cross-section task: a stock universe's recent days -> each stock's next returns."""

from stgraph.tasks.cross_section.batch import (
    CrossSectionBatch,
    CrossSectionInputs,
    CrossSectionOutput,
    CrossSectionTargets,
    StockContext,
)

__all__ = [
    "CrossSectionBatch",
    "CrossSectionInputs",
    "CrossSectionOutput",
    "CrossSectionTargets",
    "StockContext",
]
