"""The training engine in explicit steps (docs/ARCHITECTURE.md: data flow and trainer contract).

``setup.prepare`` builds everything a run needs (config checks, device, data, model, optimiser,
resume), ``step.optimisation_step`` is one update (micro-batches, finite check, skip and repair),
``loop.Trainer`` runs the epochs and owns the end-of-epoch work and checkpoints. ``backend.train``
keeps the public entry point ``run_training``.
"""
