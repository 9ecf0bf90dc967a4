"""Grab the augmentation preview with each pretext method's network inputs:
``python docs/screenshots/preview_shots.py OUT_DIR [CIFAR10_FOLDER]`` (offscreen) writes
preview_jigsaw.png, preview_mae.png and preview_colorization.png. The folder (ImageFolder layout)
defaults to ../shared/data/cifar10 beside the checkout; without it the synthetic source is used."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from backend.config import deep_merge, preset_dict
from workbench import settings, workers
from workbench.app import application, settle

SHOTS = {"jigsaw": {"method": {"name": "jigsaw"}},
         "mae": {"method": {"name": "mae", "mask_ratio": 0.75}, "model": {"backbone": "vit_tiny"}},
         "colorization": {"method": {"name": "colorization"}}}


def data_section(folder: Path | None) -> dict:
    """The CIFAR-10 folder with a small train limit, or the synthetic source."""
    if folder is not None and (folder / "train").is_dir():
        return {"data": {"source": f"imagefolder:{folder}", "train_limit": 500, "image_size": 32}}
    return {}


def main(out: Path, folder: Path | None) -> None:
    """Write one PNG per method of SHOTS into ``out``."""
    from workbench.aug_preview import AugPreview
    from workbench.config_model import ConfigModel

    settings.use_ini_file(Path(tempfile.mkdtemp()) / "settings.ini")
    app = application()
    workers.set_synchronous(True)
    out.mkdir(parents=True, exist_ok=True)
    for name, overrides in SHOTS.items():
        model = ConfigModel(deep_merge(deep_merge(preset_dict("quick"), data_section(folder)), overrides))
        preview = AugPreview(model)
        preview.resize(820, 590)
        preview.show()
        preview.refresh()
        settle(app, 0.5)
        preview.grab().save(str(out / f"preview_{name}.png"))
        print(name, preview.status.text(), preview.mosaic.inputs.captions())
        preview.close()


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
