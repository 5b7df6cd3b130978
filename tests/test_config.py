import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError

pytestmark = pytest.mark.fast  # pure logic: `make test-fast`


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  learning_rate: 0.01\nmodel:\n  backbone: null\n")
    cfg = load_config(path, ["train.learning_rate=3e-4", "train.mixed_precision=bf16", "model.backbone=x/y"])
    assert cfg.train.epochs == 7
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.train.mixed_precision == "bf16"
    assert cfg.model.backbone == "x/y"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("nosuch.epochs=3", "unknown config section"),
        ("train.epochs=many", "expects int"),
        ("train.seed=true", "expects int"),
        ("model.backbone=3", "expects str or null"),
        ("epochs=3", "section.key=value"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochz: 7\n")
    with pytest.raises(ConfigError, match="epochz"):
        load_config(path)
