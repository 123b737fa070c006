"""stgraph: spatiotemporal graph forecasting for traffic, mobility and finance.

One path for every domain: adapter -> Series -> Graph -> lazy windows -> Task -> Model -> Trainer
-> MLflow. See the README for the architecture and the two commands that set everything up.
"""

__version__ = "0.1.0"
