"""Inspect a checkpoint: embeddings, 2-D projections, neighbours, augmentation pairs, attention.

The public entry point of this package (its modules: ``common`` shared plumbing, ``attention``,
``embeddings``, ``neighbours``, ``projection``, ``views``, ``render`` PNGs for the CLI). Every
function is synchronous and GUI-free; the long ones take ``progress(fraction, message)`` and
``cancelled()`` callables and raise :class:`backend.errors.Cancelled` when ``cancelled()`` returns
True, so a GUI worker can run them off the main thread and tests can call them directly.

- :func:`compute_embeddings` -> :class:`EmbeddingSet`, cached in ``<run>/inspect/*.h5``;
  :func:`embedding_projection` adds a cached 2-D projection to it; :func:`split_images` gives the
  images behind its points.
- :func:`project_2d` (pca/umap/tsne), :func:`cluster_labels` (k-means for unlabelled data).
- :func:`nearest_neighbours` (cosine, the query first).
- :func:`augmentation_pairs`: originals and their views under the run's AugmentConfig.
- :func:`attention_maps` -> :class:`AttentionResult`; :func:`attention_threshold_mask`;
  :func:`load_image_file` for any image the user opens.
- :func:`release_models`: forget the (at most two) restored checkpoints kept in memory so that
  repeated attention/embedding calls do not re-read the checkpoint.
"""

from .attention import AttentionResult, attention_maps, attention_threshold_mask, load_image_file, upsample_maps
from .common import checkpoint_fingerprint, release_models
from .embeddings import EmbeddingSet, cache_path, compute_embeddings, embedding_projection, split_images
from .neighbours import nearest_neighbours
from .projection import PROJECTIONS, cluster_labels, project_2d, projection_key
from .views import augmentation_pairs

__all__ = [
    "AttentionResult", "EmbeddingSet", "PROJECTIONS", "attention_maps",
    "attention_threshold_mask", "augmentation_pairs", "cache_path", "checkpoint_fingerprint",
    "cluster_labels", "compute_embeddings", "embedding_projection", "load_image_file",
    "nearest_neighbours", "project_2d", "projection_key", "release_models", "split_images", "upsample_maps",
]
