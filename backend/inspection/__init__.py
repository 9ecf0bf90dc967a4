"""Inspection tools behind ``backend.inspect`` (the documented entry point): embeddings and their
cache, 2-D projections, neighbours, augmentation views and attention maps."""
