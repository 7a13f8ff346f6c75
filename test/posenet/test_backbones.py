from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoloc_ros.posenet.backbones import (
    EfficientNetB0Backbone,
    EfficientNetLite0Backbone,
    MobileNetV2Backbone,
    read_state_dict,
)
from geoloc_ros.posenet.errors import ModelError
from geoloc_ros.posenet.model import ModelConfig, build_model

# Parameter counts torchvision documents for these architectures (with the 1000-class classifier).
TORCHVISION_PARAMS = {"mobilenet_v2": 3_504_872, "efficientnet_b0": 5_288_548}
CLASSIFIER_PARAMS = 1280 * 1000 + 1000


@pytest.mark.parametrize(
    ("backbone_class", "keys"),
    [
        (
            MobileNetV2Backbone,
            [
                "features.0.0.weight",
                "features.1.conv.0.0.weight",
                "features.2.conv.3.running_var",
                "features.18.1.bias",
            ],
        ),
        (
            EfficientNetB0Backbone,
            [
                "features.0.0.weight",
                "features.1.0.block.1.fc1.weight",
                "features.6.3.block.3.1.weight",
                "features.8.0.weight",
            ],
        ),
    ],
)
def test_torchvision_layouts_match_parameter_counts_and_key_names(backbone_class, keys) -> None:
    backbone = backbone_class()
    n_params = sum(p.numel() for p in backbone.parameters())
    assert n_params + CLASSIFIER_PARAMS == TORCHVISION_PARAMS[backbone.name]
    state = backbone.state_dict()
    for key in keys:
        assert key in state
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 1280, 2, 2)


def test_torchvision_checkpoint_is_loaded_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    donor = MobileNetV2Backbone()
    state = {f"module.{k}": v for k, v in donor.state_dict().items()}
    state["module.classifier.1.weight"] = torch.zeros(1000, 1280)  # ignored: the pose head replaces it
    path = tmp_path / "mobilenet_v2.pth"
    torch.save({"state_dict": state}, path)
    assert "features.0.0.weight" in read_state_dict(path)
    config = ModelConfig(
        backbone="mobilenet_v2", weights_path=str(path), input_width=64, input_height=48, freeze_stages=4
    )
    model = build_model(config)
    torch.testing.assert_close(
        model.backbone.features[5].conv[1][0].weight, donor.features[5].conv[1][0].weight
    )
    # A checkpoint of another architecture is refused with the differing keys named.
    torch.save(EfficientNetB0Backbone().state_dict(), tmp_path / "b0.pth")
    with pytest.raises(
        ModelError, match=r"b0\.pth: checkpoint does not fit MobileNetV2Backbone: missing keys: features"
    ):
        build_model(config.model_copy(update={"weights_path": str(tmp_path / "b0.pth")}))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"junk\.pth: cannot read"):
        read_state_dict(tmp_path / "junk.pth")


def test_lite0_bundled_weights_load_with_every_key() -> None:
    backbone = EfficientNetLite0Backbone((224, 224))
    path = backbone.load_bundled_weights()  # strict: raises on any missing or unexpected key
    raw = torch.load(path, map_location="cpu", weights_only=True)
    own = backbone.net.state_dict()
    assert set(raw) - set(own) == {"_fc.weight", "_fc.bias"}
    for key in own:
        torch.testing.assert_close(own[key], raw[key])
