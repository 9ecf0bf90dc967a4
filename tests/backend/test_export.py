"""Encoder export: artifacts verified before commit, reloadable in a fresh process, model card,
and safe loading that refuses foreign or damaged files without running anything from them."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.checkpoint import file_sha256
from backend.cli import main
from backend.errors import CheckpointError, ConfigError
from backend.export import export_encoder, load_encoder, probe_batch
from backend.restore import restore_method

from .inspect_helpers import copy_run, trained_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _reference(run, images, include_projector=False):
    """Features of the run's own method for images in [0, 1]: normalise, backbone (+ projector)."""
    method, cfg, _ = restore_method(run)
    mean = torch.tensor(cfg.augment.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.augment.std).view(1, 3, 1, 1)
    with torch.no_grad():
        out = method.backbone((images - mean) / std)
        return method.projector(out) if include_projector else out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = copy_run("cnn", tmp_path_factory.mktemp("export"))
    warnings = []
    paths = export_encoder(run, on_warning=warnings.append)
    return run, paths, warnings


def test_export_writes_verified_files_and_model_card(exported):
    run, paths, warnings = exported
    folder = paths[0].parent
    assert folder == run / "export" / "epoch-0002"
    names = [p.name for p in paths]
    assert names == ["encoder.safetensors", "encoder.pt2", "encoder.torchscript.pt", "encoder.onnx",
                     "model_card.json", "README.md"]
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
    card = json.loads((folder / "model_card.json").read_text())
    assert card["backbone"] == "tiny_cnn" and card["method"]["name"] == "simclr"
    assert card["input"]["shape"] == [None, 3, 32, 32] and card["output"]["feature_dim"] == 256
    assert card["normalization"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert card["data"]["source"] == "synthetic" and card["config"]["model"]["backbone"] == "tiny_cnn"
    assert card["checkpoint"]["epoch"] == 2 and card["versions"]["torch"] == torch.__version__
    assert card["evaluation"]["knn_top1_during_training"]["value"] > 0
    assert card["evaluation"]["knn"]["source"] == "online"
    for fmt, info in card["files"].items():
        path = folder / info["file"]
        assert info["sha256"] == file_sha256(path) and info["max_abs_diff"] <= 1e-4
        assert (folder / (info["file"] + ".sha256")).read_text().split() == [info["sha256"], info["file"]]
        assert info["how_to_load"]
    assert card["recommended"] == "encoder.pt2" and "onnx" not in card["skipped"]
    assert "torchvision" in card["skipped"] and "ResNet" in card["skipped"]["torchvision"]
    # TorchScript still works but torch deprecates it: recorded and reported, not hidden
    assert set(card["deprecated"]) <= {"torchscript"}
    if card["deprecated"]:
        assert "deprecated" in card["deprecated"]["torchscript"]["notes"][0]
        assert any("encoder.torchscript.pt" in w and "deprecated" in w for w in warnings)
    readme = (folder / "README.md").read_text()
    assert "load_encoder" in readme and "torch.jit.load" in readme and "safetensors" in readme
    assert "torch.export.load" in readme and "recommended" in readme


def test_export_files_are_world_readable_like_normal_files(tmp_path):
    old = os.umask(0o022)
    try:
        paths = export_encoder(trained_run("cnn"), tmp_path / "a", formats=("safetensors", "pt2"))
    finally:
        os.umask(old)
    folder = paths[0].parent
    for path in folder.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o644, path.name
    old = os.umask(0o077)
    try:
        paths = export_encoder(trained_run("cnn"), tmp_path / "b", formats=("safetensors",))
    finally:
        os.umask(old)
    for path in paths[0].parent.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o600, path.name  # the umask is respected


def test_artifacts_reproduce_features_in_a_fresh_process(exported, tmp_path):
    run, paths, _ = exported
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    np.save(tmp_path / "images.npy", images.numpy())
    targets = [p for p in paths if p.name.startswith("encoder.")] + [paths[0].parent]
    code = textwrap.dedent("""
        import sys, numpy as np, torch
        from backend.export import load_encoder
        images = torch.from_numpy(np.load(sys.argv[1]))
        for i, path in enumerate(sys.argv[3:]):
            with torch.no_grad():
                out = load_encoder(path)(images)
            np.save(f"{sys.argv[2]}/out{i}.npy", out.numpy())
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "images.npy"), str(tmp_path),
                           *map(str, targets)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = _reference(run, images)
    for i, path in enumerate(targets):
        got = torch.from_numpy(np.load(tmp_path / f"out{i}.npy"))
        assert got.shape == (5, 256)
        assert (got - expected).abs().max().item() <= 1e-4, path


def test_mismatching_artifact_is_refused(tmp_path, monkeypatch):
    run = copy_run("cnn", tmp_path)

    def corrupting_save(tensors, filename, metadata=None):
        key = next(k for k in tensors if k.startswith("backbone.") and tensors[k].dim() == 4)
        tensors = dict(tensors, **{key: tensors[key] + 0.05})
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr("backend.export.formats.save_file", corrupting_save)
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match=r"encoder\.safetensors.*max abs difference"):
        export_encoder(run, out, formats=("safetensors",))
    assert not (out / "encoder.safetensors").exists() and not (out / "model_card.json").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_unknown_format_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="formats"):
        export_encoder(trained_run("cnn"), tmp_path, formats=("pickle",))


def test_onnx_is_skipped_with_a_reason_when_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr("backend.export.onnx_unavailable_reason",
                        lambda: "the onnxruntime package is not installed (pip install onnx onnxruntime)")
    warnings = []
    paths = export_encoder(trained_run("cnn"), tmp_path, formats=("onnx",), on_warning=warnings.append)
    assert [p.name for p in paths] == ["model_card.json", "README.md"]
    card = json.loads(paths[0].read_text())
    assert card["files"] == {} and "pip install onnx" in card["skipped"]["onnx"] and warnings


def test_onnx_is_a_default_dependency():
    import onnx  # noqa: F401 - both are main dependencies now (pyproject.toml)
    import onnxruntime  # noqa: F401
    from backend.export.formats import onnx_unavailable_reason
    assert onnx_unavailable_reason() is None


def test_onnx_export_reproduces_features(tmp_path, monkeypatch):
    run = trained_run("cnn")
    paths = export_encoder(run, tmp_path, formats=("onnx",))
    assert paths[0].name == "encoder.onnx"
    images = torch.rand(4, 3, 32, 32)
    expected = _reference(run, images)
    assert (load_encoder(paths[0])(images) - expected).abs().max() <= 1e-4
    monkeypatch.setitem(sys.modules, "onnxruntime", None)      # onnx's reference evaluator instead
    assert (load_encoder(paths[0])(images[:2]) - expected[:2]).abs().max() <= 1e-4


def test_onnx_that_onnxruntime_does_not_reproduce_is_refused(tmp_path, monkeypatch):
    import backend.export.formats as formats

    real = formats.write_onnx

    def drifting(module, path, meta, example):
        real(module, path, meta, example)
        import onnx
        model = onnx.load(str(path))
        init = next(t for t in model.graph.initializer if len(t.dims) == 4)
        arr = onnx.numpy_helper.to_array(init) + 0.05
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        onnx.save(model, str(path))

    monkeypatch.setitem(formats.WRITERS, "onnx", drifting)
    with pytest.raises(CheckpointError, match=r"encoder\.onnx was not written.*onnxruntime.*max abs difference"):
        export_encoder(trained_run("cnn"), tmp_path, formats=("onnx",))
    assert not (tmp_path / "encoder.onnx").exists()


def test_pt2_program_reloads_with_plain_torch_and_dynamic_batch(tmp_path):
    run = trained_run("cnn")
    paths = export_encoder(run, tmp_path, formats=("pt2",))
    assert paths[0].name == "encoder.pt2"
    card = json.loads(paths[1].read_text())
    assert card["files"]["pt2"]["sha256"] == file_sha256(paths[0])
    assert (tmp_path / "encoder.pt2.sha256").read_text().split() == [file_sha256(paths[0]), "encoder.pt2"]
    for n in (1, 5):
        images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))
        expected = _reference(run, images)
        with torch.no_grad():
            plain = torch.export.load(str(paths[0])).module()(images)   # the README's recipe
            ours = load_encoder(paths[0])(images)
        assert (plain - expected).abs().max() <= 1e-4 and (ours - expected).abs().max() <= 1e-4


def test_pt2_with_pickled_parts_is_refused_without_loading(tmp_path, exported):
    import zipfile
    marker = tmp_path / "pwned"
    src = exported[1][0].parent / "encoder.pt2"
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = pickle.dumps(_Payload(marker))
            zout.writestr(item, data)
    with pytest.raises(CheckpointError, match="bad.pt2.*pickle"):
        load_encoder(bad)
    assert not marker.exists()


def test_resnet_torchvision_state_dict_loads_into_plain_torchvision(tmp_path):
    run = trained_run("resnet")
    paths = export_encoder(run, tmp_path, formats=("safetensors", "torchvision"))
    assert [p.name for p in paths[:2]] == ["encoder.safetensors", "backbone.torchvision.safetensors"]
    card = json.loads((tmp_path / "model_card.json").read_text())
    how = card["files"]["torchvision"]["how_to_load"]
    assert "fc" in how and "strict=False" in how and "nn.Conv2d(3, 64, 3, 1, 1, bias=False)" in how
    # the snippet from the brief, exactly: plain torchvision loads the file
    from safetensors.torch import load_file
    from torch import nn
    from torchvision.models import resnet18
    sd = load_file(str(tmp_path / "backbone.torchvision.safetensors"))
    assert not any(k.startswith("fc.") for k in sd)
    m = resnet18(); m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity(); m.fc = nn.Identity(); m.load_state_dict(sd)  # noqa: E702,E501
    m.eval()
    images = probe_batch(32)
    meta = load_encoder(tmp_path).metadata
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = load_encoder(tmp_path)(images)
        assert (m((images - mean) / std) - expected).abs().max() <= 1e-4
        assert (load_encoder(paths[1])(images) - expected).abs().max() <= 1e-4
    # strict=False into an unmodified classifier model: only the fc keys are reported missing
    plain = resnet18()
    plain.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    result = plain.load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    # the README's torchvision recipe, run as written
    readme = (tmp_path / "README.md").read_text()
    recipe = readme.split("## torchvision state dict")[1].split("```python")[1].split("```")[0]
    scope = {"images": images}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(recipe, scope)  # noqa: S102 - our own generated snippet
    finally:
        os.chdir(cwd)
    assert (scope["features"] - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("kind", ["vit", "vit_mean"])  # CLS-token and mean-patch-token features
def test_vit_export_and_loading_without_the_workbench(tmp_path, kind):
    run = trained_run(kind)
    paths = export_encoder(run, tmp_path, formats=("safetensors", "torchscript"), include_projector=False)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = _reference(run, images)
    for path in paths[:2]:
        assert (load_encoder(path)(images) - expected).abs().max() <= 1e-4
    # the README's "safetensors + the backbone's code" recipe, run as written
    readme = (tmp_path / "README.md").read_text()
    recipe = readme.split("## safetensors")[1].split("```python")[1].split("```")[0]
    scope = {"images": images}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(recipe, scope)  # noqa: S102 - our own generated snippet
    finally:
        os.chdir(cwd)
    assert (scope["features"] - expected).abs().max() <= 1e-4


def test_projector_export(tmp_path):
    run = trained_run("cnn")
    paths = export_encoder(run, tmp_path, formats=("safetensors",), include_projector=True)
    encoder = load_encoder(tmp_path)
    assert encoder.metadata["include_projector"] and encoder.metadata["feature_dim"] == 64
    images = probe_batch(32)
    assert (encoder(images) - _reference(run, images, include_projector=True)).abs().max() <= 1e-4
    assert json.loads(paths[-2].read_text())["output"]["feature_dim"] == 64


# ---- refusing foreign and damaged files --------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _foreign_files(folder, exported_folder):
    marker = folder / "pwned"
    st = (exported_folder / "encoder.safetensors").read_bytes()
    ts = (exported_folder / "encoder.torchscript.pt").read_bytes()
    files = {}
    torch.save({"model": {}, "x": _Payload(marker)}, folder / "payload.pt")
    torch.save({"model": {}, "x": _Payload(marker)}, folder / "payload.safetensors")
    (folder / "raw.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100)
    (folder / "absurd.safetensors").write_bytes((2 ** 62).to_bytes(8, "little") + b"{}" + b"\x00" * 50)
    (folder / "cut.safetensors").write_bytes(st[: len(st) // 2])
    (folder / "cut.torchscript.pt").write_bytes(ts[: len(ts) // 2])
    (folder / "empty.safetensors").write_bytes(b"")
    save_file({"w": torch.zeros(2)}, str(folder / "foreign.safetensors"))
    for name in ("payload.pt", "payload.safetensors", "raw.pkl", "photo.jpg", "absurd.safetensors",
                 "cut.safetensors", "cut.torchscript.pt", "empty.safetensors", "foreign.safetensors"):
        files[name] = folder / name
    return files, marker


@pytest.mark.parametrize("name, reason", [
    ("payload.pt", "pickle"), ("payload.safetensors", "pickle"), ("raw.pkl", "pickle"),
    ("photo.jpg", "image"), ("absurd.safetensors", "header length"), ("cut.safetensors", "truncated"),
    ("cut.torchscript.pt", "truncated"), ("empty.safetensors", "empty"),
    ("foreign.safetensors", "not an SSL Workbench encoder"),
])
def test_foreign_or_damaged_files_are_refused_without_running_them(exported, tmp_path, name, reason):
    files, marker = _foreign_files(tmp_path, exported[1][0].parent)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_encoder(files[name])
    assert name in str(info.value)
    assert not marker.exists()


def test_modified_export_fails_its_hash(exported, tmp_path):
    folder = exported[1][0].parent
    for fname in ("encoder.torchscript.pt", "encoder.safetensors"):
        data = bytearray((folder / fname).read_bytes())
        data[-200] ^= 0xFF
        (tmp_path / fname).write_bytes(bytes(data))
        (tmp_path / (fname + ".sha256")).write_text((folder / (fname + ".sha256")).read_text())
        with pytest.raises(CheckpointError, match="recorded hash"):
            load_encoder(tmp_path / fname)


def test_folder_without_export_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="holds no exported encoder"):
        load_encoder(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(tmp_path / "nope.safetensors")


def test_cli_export(tmp_path, capsys):
    run = trained_run("cnn")
    out = tmp_path / "cli-export"
    assert main(["export", "--run-dir", str(run), "--out", str(out), "--formats", "safetensors"]) == 0
    text = capsys.readouterr().out
    assert "encoder.safetensors" in text and (out / "model_card.json").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert main(["export", "--run-dir", str(run), "--checkpoint", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.pt" in err


def test_cli_formats_match_the_exporter():
    from backend.cli import EXPORT_FORMATS
    from backend.export import FORMATS
    assert EXPORT_FORMATS == FORMATS


def test_exported_pt2_as_a_checkpoint_is_named_as_such(exported):
    from backend.checkpoint import load_checkpoint
    with pytest.raises(CheckpointError, match=r"exported model \(torch\.export \.pt2\)"):
        load_checkpoint(exported[1][0].parent / "encoder.pt2")


def test_external_backbone_card_says_how_to_rebuild_it(tmp_path):
    """A torchvision:<model> export: the card and README rebuild the backbone from torchvision by
    name (not the built-in recipe), and that code loads encoder.safetensors and reproduces it."""
    from backend.checkpoint import save_checkpoint
    from backend.methods import METHODS
    from backend.runs import checkpoint_path, read_run_config

    from .trainer_helpers import make_run

    run = make_run(tmp_path, model={"backbone": "torchvision:mobilenet_v3_small", "projector_hidden_dim": 32,
                                    "projector_out_dim": 16})
    cfg = read_run_config(run)
    torch.manual_seed(0)
    save_checkpoint({"model": METHODS[cfg.method.name](cfg).state_dict(), "epoch": 0, "step": 0,
                     "config": cfg.to_dict()}, checkpoint_path(run))
    out = tmp_path / "out"
    export_encoder(run, out, formats=("safetensors",))
    card = json.loads((out / "model_card.json").read_text())
    rebuild = card["rebuild"]
    assert "torchvision.models.get_model('mobilenet_v3_small'" in rebuild["code"]
    assert rebuild["state_dict_prefix"] == "backbone." and "load_state_dict" in rebuild["load"]
    readme = (out / "README.md").read_text()
    recipe = readme.split("## safetensors")[1].split("```python")[1].split("```")[0]
    assert "get_model('mobilenet_v3_small'" in recipe and "TinyCNN" not in recipe
    images = probe_batch(32)
    scope = {"images": images}
    cwd = os.getcwd()
    os.chdir(out)
    try:
        exec(recipe, scope)  # noqa: S102 - our own generated snippet, run as a user would
    finally:
        os.chdir(cwd)
    with torch.no_grad():
        assert (scope["features"] - load_encoder(out)(images)).abs().max() <= 1e-4
