"""Tasks: what a sample is, the loss, the metrics, the reports and serving, one per problem kind.
Each registers itself in `TASKS` (see `stgraph.tasks.base`)."""

from stgraph.tasks.base import TASKS, Batch, Loss, ModelContext, Predictor, Report, Task, Tensors

__all__ = ["TASKS", "Batch", "Loss", "ModelContext", "Predictor", "Report", "Task", "Tensors"]
