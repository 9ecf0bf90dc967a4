"""The embedding view: a checkpoint's features of a data split as a 2-D scatter (PCA at once, then
UMAP or t-SNE from a worker), coloured by class (or k-means cluster for unlabelled data). Hovering
a point shows its image; clicking it shows its nearest neighbours (cosine) in feature space.
Compare mode shows two checkpoints side by side on the same points.

State lives in :class:`EmbeddingState` (what was computed); the widgets only draw it. Embedding
and projection run in workers (``workbench.workers``) with progress and Cancel.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QSplitter,
                               QVBoxLayout, QWidget)

from .inspect_common import (MUTED_COLOUR, CheckpointCombo, InspectContext, TaskBar, backend_callbacks,
                             class_colours)
from .inspect_scatter import HoverCard, NeighbourGallery, ScatterPanel

PROJECTION_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
CLUSTERS = 10
_umap_ready = False  # UMAP has run once in this process (numba compiled its kernels)


@dataclass
class EmbeddingPoints:
    """One checkpoint's embedding of the shown points and its 2-D projections."""

    es: object                       # backend.inspect.EmbeddingSet
    projections: dict = field(default_factory=dict)  # projection_key -> (N, 2) float32


@dataclass
class EmbeddingState:
    """What the view shows: one or two embeddings of the same images, their colours and images."""

    sets: list                      # [EmbeddingPoints] (two in compare mode)
    images: object                  # uint8 tensor (N, 3, S, S), the images behind the points
    colour_ids: np.ndarray          # (N,) class ids, or k-means cluster ids when unlabelled
    colour_names: list[str]
    coloured_by: str                # "class" or "cluster"
    split: str

    def caption(self, i: int) -> str:
        """Label of point ``i`` (class or cluster name)."""
        return self.colour_names[int(self.colour_ids[i])]


# ---- worker jobs (no widgets) -----------------------------------------------------------------------
def embed_job(ctx, run_dir, checkpoints, split: str, limit: int, features: str, device: str) -> EmbeddingState:
    """Embeddings of ``split`` under each checkpoint, their PCA, the images and colours."""
    from backend.inspect import cluster_labels, compute_embeddings, embedding_projection, split_images

    sets, n = [], len(checkpoints)
    for i, checkpoint in enumerate(checkpoints):
        progress, cancelled = backend_callbacks(ctx, 0.85 * i / n, 0.85 * (i + 1) / n)
        es = compute_embeddings(run_dir, checkpoint=checkpoint, split=split, limit=limit, features=features,
                                device=device, progress=progress, cancelled=cancelled)
        sets.append(EmbeddingPoints(es, {"pca-0": embedding_projection(es, "pca")}))
    ctx.progress(0.88, "loading the images")
    ctx.check()
    first = sets[0].es
    images, _labels, _names = split_images(run_dir, first.indices, split=split, checkpoint=checkpoints[0])
    if first.labels is not None:
        ids, names, by = first.labels, list(first.class_names), "class"
    else:
        ctx.progress(0.93, "k-means clusters (the data has no labels)")
        ids = cluster_labels(first.features, k=CLUSTERS)
        names, by = [f"cluster {c}" for c in range(int(ids.max()) + 1 if len(ids) else 0)], "cluster"
    return EmbeddingState(sets, images, np.asarray(ids, dtype=np.int64), names, by, split)


def projection_job(ctx, sets, method: str, note: str = "", reproducible: bool = False,
                   on_draft=None) -> list[np.ndarray]:
    """The ``method`` projection of each embedding (cached in the run's inspect files); ``note`` is
    appended to the progress messages. UMAP: ``reproducible`` picks the seeded (slower) layout;
    ``on_draft(i, xy)`` gets the fast layout's draft of embedding ``i`` before it is refined."""
    from backend.inspect import embedding_projection

    out = []
    for i, points in enumerate(sets):
        report, cancelled = backend_callbacks(ctx, i / len(sets), (i + 1) / len(sets))
        progress = (lambda f, m, report=report: report(f, f"{m} — {note}" if f < 1 else m)) if note else report
        draft = (lambda xy, i=i: on_draft(i, xy)) if on_draft is not None else None
        out.append(embedding_projection(points.es, method, progress=progress, cancelled=cancelled,
                                        reproducible=reproducible, on_draft=draft))
        ctx.check()
    return out


class _DraftRelay(QObject):
    """Carries draft layouts from the worker thread to the GUI thread (a queued signal)."""

    draft = Signal(object, str, int, object)   # state, projection key, embedding index, (N, 2) xy


# ---- the view ------------------------------------------------------------------------------------
class EmbeddingView(QWidget):
    """Controls, one or two scatters, the hover card and the neighbour gallery."""

    def __init__(self, context: InspectContext, parent=None):
        super().__init__(parent)
        self.context = context
        self.state: EmbeddingState | None = None
        self.selected = (-1, 0)   # (point, panel) clicked last
        self.summary = ""         # what was embedded, for the status line

        controls = QHBoxLayout()
        self.split = QComboBox()
        self.split.addItems(["test", "train"])
        self.split.setToolTip("Data split whose images are embedded")
        self.limit = QSpinBox()
        self.limit.setRange(0, 100000)
        self.limit.setSingleStep(500)
        self.limit.setSpecialValueText("all")
        self.limit.setValue(2000)
        self.limit.setToolTip("At most this many images (a fixed random subset; 0 = all)")
        self.features = QComboBox()
        self.features.addItems(["backbone", "projector"])
        self.features.setToolTip("Feature source: backbone output (what kNN and export use) or projector output")
        self.projection = QComboBox()
        for key, name in PROJECTION_NAMES.items():
            self.projection.addItem(name, key)
        self.projection.setCurrentIndex(1)
        self.method = self.projection.currentData()
        self.projection.setToolTip("PCA is shown at once; UMAP and t-SNE follow from a worker")
        self.reproducible = QCheckBox("reproducible (slower)")
        self.reproducible.setToolTip("UMAP: the exactly reproducible layout (seeded, single-threaded, several "
                                     "times slower) instead of the fast parallel one (draft first, then refined)")
        self._drafts = _DraftRelay(self)
        self._drafts.draft.connect(self._show_draft)
        self.compare = QCheckBox("Compare with")
        self.compare_checkpoint = CheckpointCombo()
        self.compare_checkpoint.setEnabled(False)
        self.compute_button = QPushButton("Compute")
        self.compute_button.setDefault(True)
        form = [("Split", self.split), ("Images", self.limit), ("Features", self.features),
                ("Projection", self.projection)]
        for label, widget in form:
            controls.addWidget(QLabel(label))
            controls.addWidget(widget)
        controls.addWidget(self.reproducible)
        controls.addSpacing(12)
        controls.addWidget(self.compare)
        controls.addWidget(self.compare_checkpoint)
        controls.addStretch(1)
        controls.addWidget(self.compute_button)
        self.taskbar = TaskBar()

        self.panels = [ScatterPanel(), ScatterPanel()]
        self.panels[1].hide()
        scatters = QSplitter(Qt.Orientation.Horizontal)
        for i, panel in enumerate(self.panels):
            scatters.addWidget(panel)
            panel.hovered.connect(lambda index, i=i: self.show_hover(index, i))
            panel.clicked.connect(lambda index, i=i: self.select_point(index, i))
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        left = QWidget()
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(0, 0, 0, 0)
        left_box.addWidget(scatters, 1)
        left_box.addWidget(self.legend)

        self.card = HoverCard()
        self.gallery = NeighbourGallery()
        side = QWidget()
        side_box = QVBoxLayout(side)
        side_box.setContentsMargins(6, 0, 0, 0)
        side_box.addWidget(self.card)
        side_box.addWidget(self.gallery, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([700, 420])

        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.taskbar)
        layout.addWidget(split, 1)

        self.compute_button.clicked.connect(self.compute)
        self.compare.toggled.connect(self.compare_checkpoint.setEnabled)
        self.projection.currentIndexChanged.connect(lambda _i: self.set_method(self.projection.currentData()))
        self.reproducible.toggled.connect(lambda _on: self.method == "umap" and self.set_method("umap"))
        self.gallery.k.valueChanged.connect(lambda _k: self.selected[0] >= 0 and self.select_point(*self.selected))
        context.changed.connect(self._context_changed)
        self._context_changed()

    def _context_changed(self) -> None:
        self.compare_checkpoint.fill(self.context.checkpoints(), self.compare_checkpoint.checkpoint())
        if self.state is not None and self.state.sets[0].es.checkpoint != getattr(self.context.checkpoint, "name", ""):
            self.taskbar.show_text("the checkpoint changed: press Compute to embed with it")

    # ---- computing ----
    def checkpoints(self) -> list:
        """The checkpoints to embed: the inspected one, plus the compared one in compare mode."""
        first = self.context.checkpoint
        if self.compare.isChecked() and self.compare_checkpoint.checkpoint() is not None:
            return [first, self.compare_checkpoint.checkpoint()]
        return [first]

    def compute(self) -> None:
        """Embed the chosen split (worker), show PCA, then the chosen projection."""
        if self.context.checkpoint is None:
            self.taskbar.show_error("this run has no checkpoint yet: train it first")
            return
        self.taskbar.submit(embed_job, self.context.run_dir, self.checkpoints(), self.split.currentText(),
                            self.limit.value(), self.features.currentText(), self.context.device,
                            on_result=self._embedded, text="embedding…")

    def _embedded(self, state: EmbeddingState) -> None:
        self.state = state
        colours = class_colours(len(state.colour_names))
        n = len(state.colour_ids)
        self.card.index = -1
        self.gallery.items = []
        self.gallery.grid.clear("Click a point to see its nearest neighbours in feature space.")
        self.selected = (-1, 0)
        for i, panel in enumerate(self.panels):
            visible = i < len(state.sets)
            panel.setVisible(visible)
            if visible:
                panel.set_points(state.sets[i].projections["pca-0"], state.colour_ids, colours, self._title(i, "pca"))
        self.legend.setText(" &nbsp; ".join(
            f"<span style='color:{c}; font-size:13pt'>\u25cf</span>&nbsp;{html.escape(name)}"
            for c, name in zip(colours, state.colour_names[:60]))
            + (" …" if len(state.colour_names) > 60 else "")
            + (f" <span style='color:{MUTED_COLOUR}'>(k-means clusters: the data is unlabelled)</span>"
               if state.coloured_by == "cluster" else ""))
        es = state.sets[0].es
        cached = "from the cache" if es.from_cache else f"in {es.seconds:.1f} s"
        self.summary = f"{n} {state.split} images, {es.dim}-d {es.feature_source} features ({cached})"
        self.taskbar.show_text(self.summary)
        if self.method != "pca":
            self.set_method(self.method)  # PCA is on screen meanwhile

    def _title(self, i: int, method: str, draft: bool = False) -> str:
        es = self.state.sets[i].es
        name = PROJECTION_NAMES[method]
        if method == "umap":
            name += " (reproducible)" if self.reproducible.isChecked() else ""
        return f"{es.checkpoint} · {name} of {len(es)} {es.split} embeddings" + (" · draft, refining…" if draft else "")

    def projection_key(self, method: str) -> str:
        """The cache key of ``method`` as currently chosen (fast or reproducible UMAP)."""
        from backend.inspect import projection_key
        return projection_key(method, 0, method == "umap" and self.reproducible.isChecked())

    def set_method(self, method: str) -> None:
        """Show another projection: at once when computed before, else from a worker (the fast
        UMAP's draft layout is shown as soon as it exists, then replaced by the refined one)."""
        self.method = method
        if self.state is None:
            return
        sets, key = self.state.sets, self.projection_key(method)
        if all(key in s.projections for s in sets):
            self._show_projection(method)
            return
        cached = [s.es.projections.get(key) for s in sets]
        if all(c is not None for c in cached):
            self._projected(method, key, self.state, cached)
            return
        reproducible = method == "umap" and self.reproducible.isChecked()
        note = "compiling UMAP (first use, tens of seconds)…" if method == "umap" and not _umap_ready else ""
        state, relay = self.state, self._drafts

        def on_draft(i, xy):
            relay.draft.emit(state, key, i, xy)

        self.taskbar.submit(projection_job, sets, method, note, reproducible, on_draft,
                            text=note or f"{PROJECTION_NAMES[method]}…",
                            on_result=lambda xys: self._projected(method, key, state, xys))

    def _show_draft(self, state, key: str, i: int, xy) -> None:
        """A draft layout arrived: show it until the refined one replaces it."""
        if state is not self.state or key != self.projection_key(self.method) or key in state.sets[i].projections:
            return
        self.panels[i].set_positions(np.asarray(xy, dtype=np.float32), self._title(i, self.method, draft=True))

    def _projected(self, method: str, key: str, state: EmbeddingState, xys) -> None:
        global _umap_ready
        if method == "umap":
            _umap_ready = True
        for points, xy in zip(state.sets, xys):
            points.projections[key] = np.asarray(xy, dtype=np.float32)
        if state is self.state and key == self.projection_key(self.method):
            self._show_projection(method)
            self.taskbar.show_text(f"{self.summary} · {PROJECTION_NAMES[method]}")

    def _show_projection(self, method: str) -> None:
        key = self.projection_key(method)
        for i, points in enumerate(self.state.sets):
            self.panels[i].set_positions(points.projections[key], self._title(i, method))

    # ---- interaction ----
    def show_hover(self, index: int, panel: int = 0) -> None:
        """Show point ``index``'s image and label in the card (-1: keep the last one)."""
        if self.state is None or index < 0:
            return
        es = self.state.sets[panel].es
        detail = f"{self.state.split} image #{int(es.indices[index])}"
        if self.state.coloured_by == "cluster":
            detail += " (unlabelled; colour = k-means cluster)"
        self.card.show_point(index, self.state.images[index], self.state.caption(index), detail)

    def select_point(self, index: int, panel: int = 0) -> None:
        """Show the k nearest neighbours of point ``index`` in panel ``panel``'s feature space."""
        from backend.inspect import nearest_neighbours

        if self.state is None or index < 0:
            return
        self.selected = (index, panel)
        es = self.state.sets[panel].es
        idx, sims = nearest_neighbours(es.features, index, self.gallery.k.value())
        colours = class_colours(len(self.state.colour_names))
        labels = [self.state.caption(i) for i in idx]
        tile_colours = [colours[int(self.state.colour_ids[i])] for i in idx]
        self.gallery.show_neighbours(idx, sims, self.state.images, labels, tile_colours,
                                     f"of {self.state.split} image #{int(es.indices[index])} in {es.checkpoint}")
        for p in self.panels[: len(self.state.sets)]:
            p.mark(index, idx[1:])
        self.show_hover(index, panel)
