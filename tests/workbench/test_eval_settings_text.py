"""The evaluation table's settings text names a semi-supervised result's label fraction."""

from workbench.inspect_eval import settings_text


def test_label_fraction_in_the_settings_text():
    ft = {"kind": "finetune", "epochs": 1, "lr": 0.1, "backbone_lr_scale": 0.1, "bank_size": 30,
          "label_fraction": 0.1, "subset_seed": 2}
    assert settings_text(ft) == "1 ep, lr=0.1, backbone x0.1, bank 30, 10% of the labels (seed 2)"
    probe = {"kind": "linear_probe", "epochs": 100, "weight_decay": 5e-4, "bank_size": 500}
    assert settings_text({**probe, "label_fraction": 0.01}).endswith("bank 500, 1% of the labels (seed 0)")
    assert settings_text({**probe, "label_fraction": 1.0}) == "100 it, wd=0.0005, bank 500"
