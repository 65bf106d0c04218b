"Checkpoint round trip for the model registry: weights + `model.config` in one file rebuild the same model."
import json
import pytest
import torch
from medseg_lab.core import atomic_save
from medseg_lab.models import MODELS, build_model, model_from_config


@pytest.mark.parametrize("spatial_dims,shape", [(2, (1, 2, 24, 20)), (3, (1, 2, 12, 10, 8))])
def test_checkpoint_rebuilds_model(tmp_path, spatial_dims, shape):
    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=spatial_dims, in_channels=2, out_channels=3, preset="tiny",
                        deep_supervision=True).eval()
    path = atomic_save({"state_dict": model.state_dict(), "config": model.config}, tmp_path / "checkpoint.pt")
    (tmp_path / "config.json").write_text(json.dumps(model.config))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)   # config is plain JSON types: safe loading works
    rebuilt = model_from_config(json.loads((tmp_path / "config.json").read_text()))
    rebuilt.load_state_dict(ckpt["state_dict"])
    assert rebuilt.config == ckpt["config"] == model.config
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x))
        a, b = rebuilt(x, return_aux=True), model(x, return_aux=True)   # the exported module, outside the notebook
    assert len(a.aux_logits) == 3 and [t.shape for t in a.aux_logits] == [t.shape for t in b.aux_logits]
    for s, t in zip(a.all_logits, b.all_logits): torch.testing.assert_close(s, t)


def test_every_registered_model_has_a_tiny_preset():
    for name in MODELS:
        m = build_model(name, preset="tiny")
        assert m.config["name"] == name and m.config["preset"] == "tiny"
