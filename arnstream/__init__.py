"""arnstream: streaming network-traffic anomaly detection with ARN."""

__version__ = "0.1.0"
