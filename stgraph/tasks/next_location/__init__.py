"""Next-location prediction from check-in sequences (task ``next-location``): one sample per
session, whole users packed per batch, HGARN's MAHEC loss, Acc@k / NDCG@k / MRR overall and on
the recurring and explorative subsets."""

from stgraph.tasks.next_location.batch import (
    MobilityContext,
    NextLocationBatch,
    NextLocationInputs,
    NextLocationOutput,
    NextLocationTargets,
)
from stgraph.tasks.next_location.config import NextLocationConfig
from stgraph.tasks.next_location.predictor import NextLocationPredictor
from stgraph.tasks.next_location.scoring import NextLocationMetrics, NextLocationPrediction
from stgraph.tasks.next_location.task import NextLocationTask, build_graphs

__all__ = [
    "MobilityContext",
    "NextLocationBatch",
    "NextLocationConfig",
    "NextLocationInputs",
    "NextLocationMetrics",
    "NextLocationOutput",
    "NextLocationPrediction",
    "NextLocationPredictor",
    "NextLocationTargets",
    "NextLocationTask",
    "build_graphs",
]
