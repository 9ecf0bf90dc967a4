"""model_card.json and README.md of an export folder."""

from __future__ import annotations

import time
from pathlib import Path

from .formats import FILE_NAMES, RECOMMENDED
from .torchvision_sd import how_to_load as torchvision_how_to_load


def _latest(evaluations: list[dict], kind: str, checkpoint: str) -> dict | None:
    """The newest stored evaluation of ``kind`` for ``checkpoint`` (confusion matrix left out)."""
    found = [e for e in evaluations if e.get("kind") == kind and e.get("source") != "random_init"
             and e.get("checkpoint") in (None, checkpoint)]
    if not found:
        return None
    return {k: v for k, v in found[-1].items() if k not in ("confusion", "class_names")}


def _training_knn(run_dir) -> dict | None:
    """The last kNN top-1 the trainer logged in events.jsonl."""
    from ..runs import run_events

    last = None
    for event in run_events(run_dir):
        if event.get("kind") == "metric" and event.get("name") == "knn_top1":
            last = event
    if last is None:
        return None
    return {k: last[k] for k in ("value", "step", "epoch", "k", "temperature", "features") if k in last}


def how_to_load(fmt: str, meta: dict) -> str:
    """One sentence (or paragraph) on loading the file of format ``fmt``."""
    name = FILE_NAMES[fmt]
    return {
        "safetensors": f"backend.export.load_encoder(\"{name}\") with SSL Workbench; without it, build the "
                       f"backbone (README) and load the 'backbone.*' tensors (no pickle, no code from the file)",
        "pt2": f"recommended: torch.export.load(\"{name}\").module() (torch only; images in [0, 1], "
               f"normalisation inside; dynamic batch size)",
        "torchscript": f"torch.jit.load(\"{name}\") (torch only); TorchScript is deprecated in current torch: "
                       f"prefer {FILE_NAMES['pt2']}",
        "onnx": f"onnxruntime.InferenceSession(\"{name}\").run(None, {{\"images\": x}}) with x float32 "
                f"(N, 3, {meta['image_size']}, {meta['image_size']}) in [0, 1]",
        "torchvision": torchvision_how_to_load(meta) if fmt == "torchvision" else "",
    }[fmt]


def model_card(run_dir, cfg, meta: dict, checkpoint: Path, state_info: dict, files: dict,
               skipped: dict, atol: float, probe: str) -> dict:
    """Everything needed to use and trust the export, as one JSON-serialisable dict."""
    from ..data.sources import describe_source
    from ..methods import METHODS
    from ..models import backbone_family
    from ..runs import library_versions, read_evaluations

    evaluations = read_evaluations(run_dir) if run_dir is not None else []
    what = "projector output" if meta["include_projector"] else "backbone features (before the projection head)"
    return {
        "format": meta["format"], "format_version": meta["format_version"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "method": {"name": cfg.method.name, "label": getattr(METHODS.get(cfg.method.name), "label", "")},
        "backbone": cfg.model.backbone, "family": backbone_family(cfg.model.backbone),
        "input": {"shape": [None, 3, meta["image_size"], meta["image_size"]], "dtype": "float32",
                  "range": [0.0, 1.0], "layout": "NCHW, RGB",
                  **({"adapter": meta["input"]} if meta.get("input") else {})},
        "normalization": {"mean": meta["mean"], "std": meta["std"], "included": True},
        "output": {"feature_dim": meta["feature_dim"], "what": what},
        "include_projector": meta["include_projector"],
        "data": {"source": cfg.data.source, "description": describe_source(cfg.data.source),
                 "image_size": cfg.data.image_size, "train_limit": cfg.data.train_limit},
        "checkpoint": {"file": checkpoint.name, **state_info},
        "evaluation": {"knn_top1_during_training": _training_knn(run_dir) if run_dir else None,
                       "knn": _latest(evaluations, "knn", checkpoint.name),
                       "linear_probe": _latest(evaluations, "linear_probe", checkpoint.name)},
        "versions": library_versions(),
        "files": {fmt: {**info, "how_to_load": how_to_load(fmt, meta)} for fmt, info in files.items()},
        "recommended": FILE_NAMES[RECOMMENDED] if RECOMMENDED in files else None,
        "deprecated": {fmt: {"file": info["file"], "notes": info["deprecated"]}
                       for fmt, info in files.items() if info.get("deprecated")},
        "skipped": skipped,
        "rebuild": rebuild_recipe(meta),
        "verification": {"probe": probe, "max_abs_diff_allowed": atol,
                         "how": "each file was reloaded from disk and its features compared with the "
                                "in-memory encoder's before it was given its final name"},
        "config": cfg.to_dict(),
    }


def export_vit_pool(meta: dict) -> str:
    """The exported ViT's pooling (``model.vit_pool`` of the config in ``meta``; "cls" for exports
    made before the option existed)."""
    return str((meta.get("config") or {}).get("model", {}).get("vit_pool", "cls"))


def build_snippet(meta: dict) -> tuple[str, str]:
    """(Python that builds ``model``, the backbone, without SSL Workbench; the prefix of its keys
    in the safetensors file)."""
    name, size = meta["backbone"], meta["image_size"]
    from ..models.external import external_build_snippet, is_external
    if is_external(name):               # torchvision:<model> / timm:<model>: rebuilt from the name
        return external_build_snippet(name, size)
    if name.startswith("resnet"):
        stem = ("model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem\n"
                "model.maxpool = torch.nn.Identity()\n") if size <= 64 else ""
        return (f"import torch, torchvision\n"
                f"model = torchvision.models.{name}(weights=None)\n{stem}"
                f"model.fc = torch.nn.Identity()\n"), "backbone."
    if name.startswith("vit"):
        from ..models.vit import VIT_CONFIGS, vit_patch_size
        d, layers, heads, mlp = VIT_CONFIGS[name]
        args = (f"image_size={size}, patch_size={vit_patch_size(size)}, num_layers={layers}, num_heads={heads}, "
                f"hidden_dim={d}, mlp_dim={mlp}")
        if export_vit_pool(meta) == "mean":  # model.vit_pool = mean: torchvision's forward reads the CLS token
            return ("import torch, torchvision\n"
                    "class MeanPooledViT(torchvision.models.VisionTransformer):\n"
                    "    def forward(self, x):  # the mean patch token after the final LayerNorm\n"
                    "        x = self._process_input(x)\n"
                    "        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)\n"
                    "        return self.encoder(x)[:, 1:].mean(dim=1)\n"
                    f"model = MeanPooledViT({args})\n"
                    "model.heads = torch.nn.Identity()\n"), "backbone.vit."
        return (f"import torch, torchvision\n"
                f"model = torchvision.models.VisionTransformer({args})\n"
                f"model.heads = torch.nn.Identity()  # forward returns the CLS token after the final LayerNorm\n"), "backbone.vit."
    return ("# tiny_cnn: copy class TinyCNN from backend/models/backbones.py (4 conv3x3-BN-ReLU stages,\n"
            "# widths 32-64-128-256, strides 2-2-2-1, global average pooling), then:\n"
            "model = TinyCNN()\n"), "backbone."


def rebuild_recipe(meta: dict) -> dict:
    """How to rebuild the backbone without SSL Workbench: the Python that builds ``model`` and the
    prefix its keys carry in ``encoder.safetensors`` (strip it, then ``model.load_state_dict``)."""
    code, prefix = build_snippet(meta)
    return {"code": code, "state_dict_prefix": prefix,
            "load": f"model.load_state_dict({{k[{len(prefix)}:]: v for k, v in "
                    f"safetensors.torch.load_file('{FILE_NAMES['safetensors']}').items() "
                    f"if k.startswith('{prefix}')}})"}


def readme(meta: dict, files: dict, card: dict) -> str:
    """A README.md showing how to load the export with and without SSL Workbench."""
    size, dim = meta["image_size"], meta["feature_dim"]
    lines = [
        f"# {card['method']['label'] or card['method']['name']} encoder ({meta['backbone']})",
        "",
        f"Input: float32 images `(N, 3, {size}, {size})`, RGB, values in [0, 1]. Normalisation "
        f"(mean {meta['mean']}, std {meta['std']}) is inside the model. Output: `(N, {dim})` "
        f"{card['output']['what']}.",
        "",
        *([f"The backbone was trained on a converted input ({meta['input']}); the exported model "
           "converts its RGB input itself, the plain backbone code below does not: convert first.", ""]
          if meta.get("input") else []),
        "Files: " + ", ".join(f"`{v['file']}`" for v in files.values()) + " (each with a `.sha256`), "
        "and `model_card.json` (config, data, accuracy, versions, hashes).",
        "",
        "## With SSL Workbench",
        "",
        "```python",
        "from backend.export import load_encoder",
        "encoder = load_encoder(\"path/to/this/folder\")   # or a file: .safetensors / .pt2 / .torchscript.pt / .onnx",
        f"features = encoder(images)                     # images: (N, 3, {size}, {size}) in [0, 1]",
        "```",
        "",
    ]
    if "pt2" in files:
        lines += ["## torch.export program (recommended; needs only torch)", "", "```python", "import torch",
                  f"encoder = torch.export.load(\"{FILE_NAMES['pt2']}\").module()   # runs the program in the "
                  "file: load only files you trust",
                  "features = encoder(images)", "```", ""]
    if "torchscript" in files:
        note = (["", f"TorchScript is deprecated in torch {card['versions'].get('torch', '')}: "
                 + " ".join(files["torchscript"]["deprecated"]) + f" Prefer `{FILE_NAMES['pt2']}`."]
                if files["torchscript"].get("deprecated") else [])
        lines += ["## TorchScript (needs only torch)", *note, "", "```python", "import torch",
                  f"encoder = torch.jit.load(\"{FILE_NAMES['torchscript']}\").eval()   # runs the TorchScript "
                  "program in the file: load only files you trust",
                  "features = encoder(images)", "```", ""]
    if "onnx" in files:
        lines += ["## ONNX", "", "```python", "import onnxruntime",
                  f"session = onnxruntime.InferenceSession(\"{FILE_NAMES['onnx']}\")",
                  "features = session.run(None, {\"images\": images.numpy()})[0]", "```", ""]
    if "safetensors" in files:
        code, prefix = build_snippet(meta)
        lines += ["## safetensors + the backbone's code (no pickle, no code from the file)", "", "```python",
                  "import torch",
                  "from safetensors.torch import load_file",
                  code.rstrip("\n"),
                  f"state = load_file(\"{FILE_NAMES['safetensors']}\")",
                  f"model.load_state_dict({{k[{len(prefix)}:]: v for k, v in state.items() if k.startswith(\"{prefix}\")}})",
                  "model.eval()",
                  "mean, std = state[\"normalize.mean\"], state[\"normalize.std\"]",
                  "features = model((images - mean) / std)"
                  + ("  # then the projector: keys 'projector.*'" if meta["include_projector"] else ""),
                  "```", ""]
    if "torchvision" in files:
        from .torchvision_sd import rebuild_snippet
        lines += ["## torchvision state dict (torch + torchvision only, no pickle)", "",
                  card["files"]["torchvision"]["how_to_load"], "", "```python", "import torch",
                  rebuild_snippet(meta).rstrip("\n"),
                  f"mean = torch.tensor({meta['mean']}).view(1, 3, 1, 1)",
                  f"std = torch.tensor({meta['std']}).view(1, 3, 1, 1)",
                  "features = m((images - mean) / std)", "```", ""]
    return "\n".join(lines)
