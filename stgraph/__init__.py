"""stgraph: spatiotemporal graph forecasting for traffic, mobility and finance.

One path for every domain: adapter -> Series -> Graph -> lazy windows -> Task -> Model -> Trainer
-> MLflow. See the README for the architecture and the two commands that set everything up.
"""

from stgraph.runtime import prefer_passive_waiting, return_freed_memory

# Before anything imports torch: its OpenMP runtime reads the wait policy when it loads.
prefer_passive_waiting()
return_freed_memory()

__version__ = "0.1.0"
