"""SSL Workbench engine: configs, data, models, methods, training, evaluation (no Qt here)."""

__version__ = "0.1.0"
