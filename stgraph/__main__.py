"""`python -m stgraph` (and `torchrun -m stgraph`) run the command-line interface."""

from stgraph.cli import console

console()
