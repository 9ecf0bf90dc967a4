"""Export a run's encoder: checkpoint, output folder, formats (safetensors, torch.export, TorchScript,
ONNX, torchvision state dict) and whether to include the projector. The export runs in a worker
with progress; the dialog then lists
the written files and a summary of the model card, or the one-sentence reason an artifact was
refused (the backend verifies every file by reloading it before it keeps it)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QCheckBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QPushButton, QTextBrowser, QVBoxLayout, QWidget)

from .inspect_common import MUTED_COLOUR, CheckpointCombo, TaskBar, backend_callbacks

FORMAT_LABELS = {"safetensors": "safetensors (weights + metadata, no pickle)",
                 "pt2": "torch.export program (.pt2, recommended: runs with torch alone)",
                 "torchscript": "TorchScript (traced; deprecated in current torch)",
                 "onnx": "ONNX (verified in onnxruntime)",
                 "torchvision": "torchvision state dict (ResNet backbones: loads into torchvision.models)"}


def export_job(ctx, run_dir, out_dir, checkpoint, formats, include_projector: bool) -> dict:
    """Export and return {'files': [Path], 'warnings': [str], 'card': dict or None}."""
    from backend.export import export_encoder

    warnings: list[str] = []
    progress, cancelled = backend_callbacks(ctx)
    files = export_encoder(run_dir, out_dir, checkpoint=checkpoint, formats=formats,
                           include_projector=include_projector, progress=progress, cancelled=cancelled,
                           on_warning=warnings.append)
    card = None
    for path in files:
        if path.name == "model_card.json":
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
    return {"files": files, "warnings": warnings, "card": card}


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def card_summary(card: dict) -> str:
    """The model card as a short HTML summary."""
    if not card:
        return ""
    esc = html.escape
    out = card.get("output", {})
    inp = card.get("input", {})
    ck = card.get("checkpoint", {})
    lines = [f"<b>{esc(str(card.get('method', {}).get('label') or card.get('method', {}).get('name', '?')))}</b> · "
             f"{esc(str(card.get('backbone', '?')))} ({esc(str(card.get('family', '')))})",
             f"Input: {'×'.join('N' if d is None else str(d) for d in inp.get('shape') or [])} "
             f"{esc(str(inp.get('dtype', '')))} in {esc(str(inp.get('range')))}, {esc(str(inp.get('layout', '')))};"
             f" normalisation included",
             f"Output: {out.get('feature_dim')}-d {esc(str(out.get('what', '')))}",
             f"Checkpoint: {esc(str(ck.get('file', '')))}, epoch {ck.get('epoch', '?')}, step {ck.get('step', '?')}",
             f"Data: {esc(str(card.get('data', {}).get('source', '?')))}"]
    ev = card.get("evaluation", {}) or {}
    scores = []
    if ev.get("knn_top1_during_training"):
        scores.append(f"kNN during training {100 * ev['knn_top1_during_training'].get('value', 0):.1f} %")
    for key, name in (("knn", "kNN"), ("linear_probe", "linear probe")):
        if ev.get(key):
            scores.append(f"{name} {100 * ev[key].get('top1', 0):.1f} %")
    if scores:
        lines.append("Evaluation: " + ", ".join(scores))
    for fmt, info in (card.get("files") or {}).items():
        lines.append(f"✔ {esc(info.get('file', fmt))}: {human_size(int(info.get('bytes', 0)))}, verified "
                     f"(max abs diff {float(info.get('max_abs_diff', 0)):.1e})")
    for fmt, why in (card.get("skipped") or {}).items():
        lines.append(f"<span style='color:#b45309'>skipped {esc(fmt)}: {esc(str(why))}</span>")
    return "<br>".join(lines)


class ExportDialog(QDialog):
    """The export form, progress, and the result (files + model card, or the error sentence)."""

    def __init__(self, run_dir, checkpoint=None, parent=None):
        super().__init__(parent)
        from backend.export import FORMATS, onnx_unavailable_reason
        from backend.runs import list_checkpoints

        self.run_dir = Path(run_dir)
        self.written: list[Path] = []
        self.card: dict | None = None
        self.setWindowTitle(f"Export encoder — {self.run_dir.name}")
        self.resize(700, 560)

        self.checkpoint = CheckpointCombo()
        self.checkpoint.fill(list_checkpoints(self.run_dir), checkpoint)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText(f"default: {self.run_dir / 'export'}/<epoch>")
        self.out_edit.setToolTip("Folder the files are written to (created if needed)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        self.format_boxes: dict[str, QCheckBox] = {}
        formats = QWidget()
        fbox = QVBoxLayout(formats)
        fbox.setContentsMargins(0, 0, 0, 0)
        self.onnx_reason = onnx_unavailable_reason()
        for fmt in FORMATS:
            box = QCheckBox(FORMAT_LABELS.get(fmt, fmt))
            box.setChecked(True)
            if fmt == "onnx" and self.onnx_reason:
                box.setChecked(False)
                box.setEnabled(False)
                box.setText(f"{FORMAT_LABELS['onnx']} (unavailable)")
                box.setToolTip(self.onnx_reason)
            box.toggled.connect(lambda _on: self._update_buttons())
            self.format_boxes[fmt] = box
            fbox.addWidget(box)
            if fmt == "onnx" and self.onnx_reason:
                reason = QLabel(self.onnx_reason)
                reason.setTextFormat(Qt.TextFormat.PlainText)
                reason.setWordWrap(True)
                reason.setStyleSheet(f"color: {MUTED_COLOUR}; margin-left: 22px;")
                fbox.addWidget(reason)
        self.projector = QCheckBox("Include the projection head (features = projector output)")
        self.projector.setToolTip("Off: backbone features, what kNN and linear probes use")
        form = QFormLayout()
        form.addRow("Checkpoint", self.checkpoint)
        form.addRow("Output folder", out_row)
        form.addRow("Formats", formats)
        form.addRow("", self.projector)

        self.taskbar = TaskBar()
        self.files = QListWidget()
        self.files.itemDoubleClicked.connect(lambda item: QDesktopServices.openUrl(
            QUrl.fromLocalFile(str(Path(item.data(Qt.ItemDataRole.UserRole)).parent))))
        self.summary = QTextBrowser()
        self.summary.setOpenExternalLinks(False)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.close_button = QPushButton("Close")
        self.export_button.clicked.connect(self.export)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.taskbar)
        layout.addWidget(QLabel("<b>Written files</b>"))
        layout.addWidget(self.files, 1)
        layout.addWidget(QLabel("<b>Model card</b>"))
        layout.addWidget(self.summary, 2)
        layout.addLayout(buttons)
        self._update_buttons()

    def chosen_formats(self) -> list[str]:
        return [fmt for fmt, box in self.format_boxes.items() if box.isChecked() and box.isEnabled()]

    def _update_buttons(self) -> None:
        ok = bool(self.chosen_formats()) and self.checkpoint.checkpoint() is not None
        self.export_button.setEnabled(ok and not self.taskbar.busy)

    def browse(self) -> None:
        """Pick the output folder."""
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.out_edit.text() or str(self.run_dir))
        if path:
            self.out_edit.setText(path)

    def export(self) -> None:
        """Run the export in a worker."""
        formats = self.chosen_formats()
        if not formats or self.checkpoint.checkpoint() is None:
            self.taskbar.show_error("choose at least one format" if not formats else "this run has no checkpoint")
            return
        out = self.out_edit.text().strip()
        self.files.clear()
        self.summary.clear()
        self.export_button.setEnabled(False)
        self.taskbar.submit(export_job, self.run_dir, Path(out).expanduser() if out else None,
                            self.checkpoint.checkpoint(), formats, self.projector.isChecked(),
                            on_result=self._exported, text="exporting…")
        if self.taskbar.task is not None:
            self.taskbar.task.finished.connect(self._update_buttons)
        else:
            self._update_buttons()

    def _exported(self, result: dict) -> None:
        self.written, self.card = list(result["files"]), result["card"]
        for path in self.written:
            size = human_size(path.stat().st_size) if path.exists() else "?"
            self.files.addItem(f"{path}  ({size})")
            self.files.item(self.files.count() - 1).setData(Qt.ItemDataRole.UserRole, str(path))
        folder = self.written[0].parent if self.written else ""
        text = f"exported to {folder}"
        if result["warnings"]:
            text += " — " + "; ".join(result["warnings"])
        self.taskbar.show_text(text)
        self.summary.setHtml(card_summary(self.card or {}))
