"""The evaluation panel: kNN and linear probe on frozen features of the inspected checkpoint, each in
a worker with progress and Cancel; fine-tuning as a run of its own, trained by a trainer process
(``workbench.process.TrainerController``) with progress and Cancel (= stop); a table of every
stored result of the run (the backend appends each new one to the run's evaluations.jsonl, so the
runs browser sees it too) and a confusion matrix view (rows: true class, columns: predicted class;
colour = fraction of the row)."""

from __future__ import annotations

import html
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QPushButton, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from .inspect_common import MUTED_COLOUR, InspectContext, TaskBar, backend_callbacks


COLUMNS = ("When", "Kind", "Checkpoint", "Features", "Settings", "Top-1", "Top-5")
KIND_NAMES = {"knn": "kNN", "linear_probe": "Linear probe", "finetune": "Fine-tune"}
MAX_CELL_TEXT_CLASSES = 20


# ---- worker jobs ---------------------------------------------------------------------------------------
def knn_job(ctx, run_dir, checkpoint, k: int, temperature: float, features: str, device: str) -> dict:
    """kNN top-1/top-5 and confusion matrix on the cached features (recorded in the run)."""
    from backend.linear_probe import knn_probe

    progress, cancelled = backend_callbacks(ctx)
    return knn_probe(run_dir, checkpoint=checkpoint, k=k, temperature=temperature, features=features,
                     device=device, record=True, progress=progress, cancelled=cancelled)


def probe_job(ctx, run_dir, checkpoint, features: str, epochs: int, weight_decay: float, train_limit: int,
              device: str) -> dict:
    """Linear probe top-1/top-5 and confusion matrix (recorded in the run)."""
    from backend.linear_probe import linear_probe

    progress, cancelled = backend_callbacks(ctx)
    return linear_probe(run_dir, checkpoint=checkpoint, features=features, epochs=epochs,
                        weight_decay=weight_decay, train_limit=train_limit, device=device, record=True,
                        progress=progress, cancelled=cancelled)


def create_finetune_job(ctx, run_dir, checkpoint, epochs: int, lr: float, backbone_lr_scale: float,
                        train_limit: int, device: str):
    """Create the fine-tune run directory (a worker: it reads the data cache to size the batch);
    a trainer process trains it and records the result in the source run."""
    from backend.finetune import create_finetune_run

    return create_finetune_run(run_dir, checkpoint=checkpoint, epochs=epochs, lr=lr,
                               backbone_lr_scale=backbone_lr_scale, train_limit=train_limit, device=device,
                               record=True)


def settings_text(result: dict) -> str:
    """The parameters of a stored result, short."""
    if result.get("kind") == "knn":
        text = f"k={result.get('k')}, T={result.get('temperature')}"
    elif result.get("kind") == "linear_probe":
        text = f"{result.get('epochs')} it, wd={result.get('weight_decay')}"
    elif result.get("kind") == "finetune":
        text = f"{result.get('epochs')} ep, lr={result.get('lr')}, backbone x{result.get('backbone_lr_scale')}"
    else:
        text = ""
    if result.get("bank_size") is not None:
        text += f", bank {result['bank_size']}"
    if isinstance(result.get("label_fraction"), (int, float)) and result["label_fraction"] < 1:  # 1 % / 10 %
        text += f", {result['label_fraction']:.0%} of the labels (seed {result.get('subset_seed', 0)})"
    if result.get("source") == "random_init":
        text += ", random init"
    return text


def percent(value) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) else "—"


# ---- confusion matrix ------------------------------------------------------------------------------------
class ConfusionView(QWidget):
    """A (C, C) confusion matrix as an ImageItem, class names on the rows, counts in the cells."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("<b>Confusion matrix</b>")
        self.title.setWordWrap(True)
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.getViewBox().invertY(True)
        self.plot.getViewBox().setAspectLocked(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(pg.colormap.get("CET-L12").getLookupTable(nPts=256) if "CET-L12" in
                                  pg.colormap.listMaps() else pg.colormap.get("viridis").getLookupTable(nPts=256))
        self.plot.addItem(self.image)
        self.plot.setLabel("bottom", "predicted class", color="#30343b")
        self.plot.setLabel("left", "true class", color="#30343b")
        self.texts: list[pg.TextItem] = []
        self.matrix = np.zeros((0, 0), np.int64)
        self.class_names: list[str] = []
        self.empty_note = QLabel("No evaluation yet: run a kNN or linear probe to see its confusion matrix.")
        self.empty_note.setTextFormat(Qt.TextFormat.PlainText)
        self.empty_note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_note.setWordWrap(True)
        self.empty_note.setStyleSheet(f"color: {MUTED_COLOUR};")
        layout.addWidget(self.title)
        layout.addWidget(self.empty_note, 1)
        layout.addWidget(self.plot_widget, 1)
        self.plot_widget.hide()   # no axes without a matrix

    def set_matrix(self, matrix, class_names, title: str = "") -> None:
        """Show ``matrix`` (rows true, columns predicted) with ``class_names``."""
        cm = np.asarray(matrix, dtype=np.int64)
        self.matrix, self.class_names = cm, list(class_names)
        self.empty_note.setVisible(cm.size == 0)
        self.plot_widget.setVisible(cm.size > 0)
        c = cm.shape[0]
        rows = cm.sum(axis=1, keepdims=True)
        frac = np.divide(cm, np.maximum(rows, 1), dtype=np.float64)
        self.image.setImage(frac, levels=(0.0, 1.0))
        self.image.setRect(QRectF(0, 0, c, c))
        for item in self.texts:
            self.plot.removeItem(item)
        self.texts = []
        if c <= MAX_CELL_TEXT_CLASSES:
            for i in range(c):
                for j in range(c):
                    if cm[i, j]:
                        item = pg.TextItem(str(cm[i, j]), color="#ffffff" if frac[i, j] > 0.55 else "#30343b",
                                           anchor=(0.5, 0.5))
                        item.setPos(j + 0.5, i + 0.5)
                        self.plot.addItem(item)
                        self.texts.append(item)
        step = max(1, c // 25)
        left = [(i + 0.5, f"{self.class_names[i] if i < len(self.class_names) else i} ({i})")
                for i in range(0, c, step)]
        bottom = [(i + 0.5, str(i)) for i in range(0, c, step)]
        self.plot.getAxis("left").setTicks([left, []])
        self.plot.getAxis("bottom").setTicks([bottom, []])
        self.plot.getViewBox().setRange(xRange=(0, c), yRange=(0, c), padding=0.02)
        diagonal = np.trace(cm) / max(cm.sum(), 1)
        self.title.setText(f"<b>Confusion matrix</b> <span style='color:{MUTED_COLOUR}'>{html.escape(title)} · "
                           f"{cm.sum()} test images, accuracy {100 * diagonal:.1f} % · colour: fraction of the "
                           f"true class</span>")


# ---- the panel ---------------------------------------------------------------------------------------------
class EvaluationView(QWidget):
    """kNN and linear probe controls, the results table and the confusion matrix."""

    def __init__(self, context: InspectContext, parent=None):
        super().__init__(parent)
        self.context = context
        self.results: list[dict] = []
        cfg = context.config()

        self.features = QComboBox()
        self.features.addItems(["backbone", "projector"])
        self.features.setToolTip("Feature source: backbone output (what export uses) or projector output")
        self.k = QSpinBox()
        self.k.setRange(1, 10000)
        self.k.setValue(int(cfg.eval.knn_k) if cfg else 200)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.001, 10.0)
        self.temperature.setDecimals(3)
        self.temperature.setSingleStep(0.01)
        self.temperature.setValue(float(cfg.eval.knn_temperature) if cfg else 0.1)
        self.knn_button = QPushButton("Run kNN")
        self.knn_button.setToolTip("Weighted cosine kNN: bank = train split, queries = test split")
        knn_box = QGroupBox("kNN")
        row = QHBoxLayout(knn_box)
        for w in (QLabel("k"), self.k, QLabel("T"), self.temperature, self.knn_button):
            row.addWidget(w)

        self.epochs = QSpinBox()
        self.epochs.setRange(1, 5000)
        self.epochs.setValue(100)
        self.epochs.setToolTip("L-BFGS iterations (full passes over the training features)")
        self.weight_decay = QDoubleSpinBox()
        self.weight_decay.setDecimals(6)
        self.weight_decay.setRange(0.0, 1.0)
        self.weight_decay.setSingleStep(1e-4)
        self.weight_decay.setValue(5e-4)
        self.train_limit = QSpinBox()
        self.train_limit.setRange(0, 10_000_000)
        self.train_limit.setSingleStep(1000)
        self.train_limit.setSpecialValueText("all")
        self.train_limit.setToolTip("Train the classifier on at most this many training images (0 = all)")
        self.probe_button = QPushButton("Run linear probe")
        self.probe_button.setToolTip("Logistic regression on frozen, standardised features (train -> test)")
        probe_box = QGroupBox("Linear probe")
        row = QHBoxLayout(probe_box)
        for w in (QLabel("iterations"), self.epochs, QLabel("weight decay"), self.weight_decay,
                  QLabel("train images"), self.train_limit, self.probe_button):
            row.addWidget(w)

        self.ft_epochs = QSpinBox()
        self.ft_epochs.setRange(1, 1000)
        self.ft_epochs.setValue(10)
        self.ft_lr = QDoubleSpinBox()
        self.ft_lr.setDecimals(4)
        self.ft_lr.setRange(0.0001, 10.0)
        self.ft_lr.setSingleStep(0.01)
        self.ft_lr.setValue(0.05)
        self.ft_lr.setToolTip("Classifier learning rate per 256 images (SGD, Nesterov, cosine decay)")
        self.ft_backbone_scale = QDoubleSpinBox()
        self.ft_backbone_scale.setDecimals(3)
        self.ft_backbone_scale.setRange(0.0, 1.0)
        self.ft_backbone_scale.setSingleStep(0.05)
        self.ft_backbone_scale.setValue(0.1)
        self.ft_backbone_scale.setToolTip("Backbone learning rate = this x the classifier's (0 freezes it)")
        self.finetune_button = QPushButton("Run fine-tuning")
        self.finetune_button.setToolTip("Train backbone + a linear classifier end to end on the labelled train "
                                        "split (crop + flip), score the test split; the checkpoint is not changed")
        finetune_box = QGroupBox("Fine-tune")
        row = QHBoxLayout(finetune_box)
        for w in (QLabel("epochs"), self.ft_epochs, QLabel("lr"), self.ft_lr, QLabel("backbone x"),
                  self.ft_backbone_scale, self.finetune_button):
            row.addWidget(w)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Features"))
        controls.addWidget(self.features)
        controls.addWidget(knn_box)
        controls.addWidget(probe_box)
        controls.addStretch(1)
        controls_2 = QHBoxLayout()
        controls_2.addWidget(finetune_box)
        controls_2.addStretch(1)
        self.taskbar = TaskBar()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.confusion = ConfusionView()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.confusion)
        split.setSizes([560, 480])

        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addLayout(controls_2)
        layout.addWidget(self.taskbar)
        layout.addWidget(split, 1)
        self.knn_button.clicked.connect(self.run_knn)
        self.probe_button.clicked.connect(self.run_probe)
        self.finetune_button.clicked.connect(self.run_finetune)
        self.ft_controller = None          # the fine-tune run's TrainerController, once started
        self.taskbar.cancel_button.clicked.connect(self._cancel_finetune)
        self.load_results()

    def load_results(self) -> None:
        """Show every evaluation stored in the run (newest last)."""
        from backend.runs import read_evaluations
        self.results = []
        self.table.setRowCount(0)
        for result in read_evaluations(self.context.run_dir):
            self.add_result(result, select=False)

    def add_result(self, result: dict, select: bool = True) -> None:
        """Append one result row (and show its confusion matrix when it has one)."""
        self.results.append(result)
        row = self.table.rowCount()
        self.table.insertRow(row)
        when = time.strftime("%m-%d %H:%M", time.localtime(result.get("time", time.time())))
        cells = (when, KIND_NAMES.get(result.get("kind"), str(result.get("kind"))), str(result.get("checkpoint", "")),
                 str(result.get("features", "")), settings_text(result), percent(result.get("top1")),
                 percent(result.get("top5")))
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if col >= 5:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, col, item)
        if select:
            self.table.selectRow(row)
            self.table.scrollToBottom()

    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        result = self.results[rows[0].row()]
        if result.get("confusion"):
            title = f"{KIND_NAMES.get(result.get('kind'), '')} · {result.get('checkpoint', '')}"
            self.confusion.set_matrix(result["confusion"], result.get("class_names") or [], title)

    def _busy(self) -> bool:
        if self.context.checkpoint is None:
            self.taskbar.show_error("this run has no checkpoint yet: train it first")
            return True
        return False

    def run_knn(self) -> None:
        """kNN with the chosen k and T (worker)."""
        if self._busy():
            return
        self.taskbar.submit(knn_job, self.context.run_dir, self.context.checkpoint, self.k.value(),
                            self.temperature.value(), self.features.currentText(), self.context.device,
                            on_result=self._done, text="kNN…")

    def run_probe(self) -> None:
        """Linear probe with the chosen settings (worker)."""
        if self._busy():
            return
        self.taskbar.submit(probe_job, self.context.run_dir, self.context.checkpoint, self.features.currentText(),
                            self.epochs.value(), self.weight_decay.value(), self.train_limit.value(),
                            self.context.device, on_result=self._done, text="linear probe…")

    # ---- fine-tuning: a run of its own, trained by a trainer process ---------------------------
    def run_finetune(self) -> None:
        """Fine-tuning with the chosen settings (train-image cap shared with the probe): create the
        fine-tune run (worker), then train it in a trainer process with progress and Cancel (stop)."""
        if self._busy():
            return
        if self.finetune_running():
            self.taskbar.show_text("a fine-tune run is already training: Cancel stops it")
            return
        self.taskbar.submit(create_finetune_job, self.context.run_dir, self.context.checkpoint,
                            self.ft_epochs.value(), self.ft_lr.value(), self.ft_backbone_scale.value(),
                            self.train_limit.value(), self.context.device, on_result=self._start_finetune,
                            text="preparing the fine-tune run…")

    def finetune_running(self) -> bool:
        """Whether this view's fine-tune trainer process is alive."""
        return self.ft_controller is not None and self.ft_controller.is_running()

    def _start_finetune(self, run_dir) -> None:
        from .process import TrainerController
        from .run_state import RunState

        state = RunState(run_dir, self)
        self.ft_controller = TrainerController(state, self)
        state.changed.connect(self._finetune_progress)
        self.ft_controller.exited.connect(self._finetune_exited)
        self.taskbar.hand_over()  # the bar and Cancel now follow the trainer, not the worker
        self.taskbar.show_text(f"fine-tuning in {state.run_id}…")
        self.taskbar.bar.setRange(0, 0)
        self.taskbar.bar.setVisible(True)
        self.taskbar.cancel_button.setVisible(True)
        self.ft_controller.start()

    def _finetune_progress(self) -> None:
        if self.ft_controller is None or not self.finetune_running():
            return
        state = self.ft_controller.state
        fraction = state.progress()
        if fraction is not None and state.total_steps:
            self.taskbar.bar.setRange(0, 1000)
            self.taskbar.bar.setValue(int(1000 * fraction))
        loss = state.latest.get("loss")
        self.taskbar.show_text(f"fine-tuning ({state.state}): {state.progress_text()}" +
                               (f", loss {loss:.3f}" if loss is not None else ""))

    def _cancel_finetune(self) -> None:
        """Cancel = stop the fine-tune trainer (it checkpoints; the run stays resumable)."""
        if self.finetune_running():
            self.ft_controller.stop()
            self.taskbar.show_text("stopping the fine-tune run…")

    def _finetune_exited(self, state: str, message: str) -> None:
        from backend.finetune import finetune_result

        self.taskbar.bar.setVisible(False)
        self.taskbar.cancel_button.setVisible(False)
        run_dir = self.ft_controller.run_dir
        result = finetune_result(run_dir) if state == "finished" else None
        if result is not None:
            self.load_results()
            self.table.selectRow(self.table.rowCount() - 1)
            self._announce(result)
        elif state == "stopped":
            self.taskbar.show_text(f"fine-tuning stopped; the run {run_dir.name} is kept (resume it to finish)")
        else:
            self.taskbar.show_error(f"fine-tuning {state}: {message}")

    def _done(self, result: dict) -> None:
        self.add_result(result)
        self._announce(result)

    def _announce(self, result: dict) -> None:
        top5 = f", top-5 {percent(result['top5'])}" if result.get("top5") is not None else ""
        self.taskbar.show_text(f"{KIND_NAMES[result['kind']]} top-1 {percent(result['top1'])}{top5} "
                               f"({result.get('queries', '?')} test images; recorded in the run)")
