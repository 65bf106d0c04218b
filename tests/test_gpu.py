"""CUDA checks (skipped on machines without a GPU, e.g. CI): AMP training, resume and models on the GPU."""
import json
import pytest, torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

@cuda
def test_unet_cuda_matches_cpu():
    from medseg_lab.models import build_model
    torch.manual_seed(0)
    m = build_model("unet", spatial_dims=3, in_channels=1, out_channels=3, preset="tiny").eval()
    x = torch.randn(1, 1, 20, 24, 28)
    with torch.no_grad():
        ref = m(x)
        out = m.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)

@cuda
def test_train_amp_and_resume_on_cuda(tmp_path):
    from medseg_lab.train import TrainConfig, train
    cfg = TrainConfig(preset="tiny", data="phantom", data_kwargs={"size": 32}, epochs=2, batch_size=4,
                      out_dir=str(tmp_path), device="cuda", amp=True, progress=False)
    r = train(cfg)
    m = json.loads((r.run_dir / "metrics.json").read_text())
    assert m["amp_used"] is True and m["device"].startswith("cuda")
    assert all(torch.isfinite(torch.tensor(r.history["train_loss"].values)))
    # the same recipe resumed from epoch 1 gives the same epoch-2 loss (AMP scaler state restored)
    cfg1 = TrainConfig(**{**cfg.to_dict(), "name": "resume"})
    r1 = train(cfg1, callback=lambda epoch, row: epoch >= 1)
    r2 = train(resume=r1.run_dir)
    a, b = r.history["train_loss"].iloc[1], r2.history["train_loss"].iloc[1]
    assert abs(a - b) < 1e-3 * max(1.0, abs(a)), (a, b)
