"""The augmentation preview shows what the selected method's network receives: jigsaw's 9
shuffled tiles, MAE's masked image at the configured ratio, colorization's L channel and ab
target; methods without such inputs (SimCLR) show only the crops."""

import numpy as np
from PySide6.QtGui import QImage

from workbench import workers
from workbench.aug_preview import AugPreview
from workbench.config_model import ConfigModel

from .conftest import quick_small


def pixels(img: QImage) -> np.ndarray:
    """A QImage as a uint8 (H, W, 3) array."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    raw = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    return raw.reshape(img.height(), img.bytesPerLine())[:, :3 * img.width()].reshape(img.height(), img.width(), 3)


def preview_for(qtbot, **overrides) -> tuple[ConfigModel, AugPreview]:
    workers.set_synchronous(True)
    model = ConfigModel(quick_small(**overrides))
    preview = AugPreview(model)
    qtbot.addWidget(preview)
    preview.refresh()
    return model, preview


def select(preview, model, **values) -> list:
    for path, value in values.items():
        model.set_value(path.replace("__", "."), value)
    preview.refresh()
    return preview.mosaic.inputs.rows


def test_jigsaw_shows_nine_shuffled_tiles_then_simclr_only_the_crops(qtbot):
    model, preview = preview_for(qtbot)
    assert preview.mosaic.inputs.rows == [] and preview.mosaic.toolTip() == ""
    crops = [label for label, _ in preview.mosaic.rows]
    [(caption, images, tags)] = select(preview, model, method__name="jigsaw", method__num_permutations=16)
    assert "tiles in shuffled order" in caption and caption in preview.mosaic.toolTip()
    assert len(images) == preview.count.value() and len(tags) == len(images)
    assert all(t.startswith("#") and 0 <= int(t[1:]) < 16 for t in tags)
    t = (images[0].width() - 2) // 3                            # 3 tiles and 2 one-pixel gaps a side
    assert images[0].width() == images[0].height() == 3 * t + 2 and t == 8
    for img in images:
        a = pixels(img)
        assert (a[t] == 255).all() and (a[2 * t + 1] == 255).all()          # the white gaps
        assert (a[:, t] == 255).all() and (a[:, 2 * t + 1] == 255).all()
        blocks = [a[r * (t + 1):r * (t + 1) + t, q * (t + 1):q * (t + 1) + t] for r in range(3) for q in range(3)]
        assert len(blocks) == 9 and all(b.shape == (t, t, 3) and not (b == 255).all() for b in blocks)
    assert [label for label, _ in preview.mosaic.rows] == crops   # the crops stay
    assert select(preview, model, method__name="simclr") == []
    assert preview.mosaic.toolTip() == ""
    assert [label for label, _ in preview.mosaic.rows] == crops


def test_mae_masks_the_configured_share_of_patches(qtbot):
    model, preview = preview_for(qtbot, model={"backbone": "vit_tiny"})
    (caption, images, _), (full_caption, _, _) = select(preview, model, method__name="mae", method__mask_ratio=0.5)
    assert "masked image" in caption and "50 %" in caption and "full view" in full_caption
    patch, grid = 4, 8                                         # a ViT at 32 px: 4 px patches, 8 x 8
    for img in images:
        a = pixels(img).reshape(grid, patch, grid, patch, 3)
        hidden = (a == 128).all(axis=(1, 3, 4))               # mid grey, every pixel of the patch
        assert int(hidden.sum()) == grid * grid // 2
    [(caption, images, _), _] = select(preview, model, method__mask_ratio=0.75)
    assert "75 %" in caption
    assert all(int((pixels(i).reshape(8, 4, 8, 4, 3) == 128).all(axis=(1, 3, 4)).sum()) == 48 for i in images)


def test_colorization_shows_the_l_channel_and_the_ab_target(qtbot):
    model, preview = preview_for(qtbot)
    (l_caption, grey, _), (ab_caption, ab, _) = select(preview, model, method__name="colorization")
    assert "L channel" in l_caption and "ab target" in ab_caption and "L = 50" in ab_caption
    for img in grey:
        a = pixels(img).astype(int)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert all(img.width() == 8 for img in ab)                # the loss's 1/4-resolution target
    assert any(np.ptp(pixels(img).astype(int), axis=2).max() > 10 for img in ab)  # coloured, not grey
    select(preview, model, method__name="simclr")
    assert preview.mosaic.inputs.rows == []
