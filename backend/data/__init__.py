"""Data sources, the uint8 image cache and batched on-device view generation."""
