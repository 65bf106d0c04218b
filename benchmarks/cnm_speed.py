"""CNM-UNet cost on CPU, measured in one run (issue 6, 'Done when'):

* training-step time at 3x256x256, batch 2: CNM-UNet (paper preset, official tolerances 1e-7/1e-9, and library
  tolerances 1e-3/1e-4) vs the vanilla UNet (paper preset) and vs the continuous UNet (every block an ODE block);
* DUSE time per image vs plain inference (CNM-UNet paper preset, one 3x256x256 image).

Ratios are against references measured in the same process; the absolute times depend on the machine and its load.
Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cnm_speed.py [--quick] [--threads N] [--skip-continuous]
Writes benchmarks/cnm_speed_results.json and .txt.
"""
import argparse, json, platform, statistics, time
from pathlib import Path

import torch
import torch.nn.functional as F

from medseg_lab.models import build_model
from medseg_lab.tta import make_adapter, record_cnm_stats


def train_step_time(model, x, y, repeat):
    "Median seconds of one AdamW step (forward, BCE-with-logits loss, backward, step) after one warm-up step."
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    times, nfe = [], []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward(); opt.step()
        if i: times.append(time.perf_counter() - t0); nfe.append(getattr(model, "nfe", 0))
    return statistics.median(times), times, nfe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="64x64 input and small widths (a smoke test of the script)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-continuous", action="store_true")
    ap.add_argument("--suffix", default="", help="appended to the result file names")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = 64 if args.quick else 256
    over = dict(features=(8, 16, 32, 64, 64)) if args.quick else {}
    x = torch.randn(2, 3, size, size)
    y = (torch.rand(2, 1, size, size) > 0.5).float()
    res = dict(input=[2, 3, size, size], threads=args.threads, torch=torch.__version__, machine=platform.processor() or platform.machine(),
               quick=args.quick, train_step_s={}, train_step_all_s={}, nfe={})
    models = {"unet (paper)": ("unet", "paper", {}),
              "cnmunet (paper, rtol 1e-7)": ("cnmunet", "paper", {}),
              "cnmunet (paper, rtol 1e-3)": ("cnmunet", "paper", dict(rtol=1e-3, atol=1e-4)),
              "continuous-unet": ("cnmunet", "continuous-unet", {})}
    if args.skip_continuous: models.pop("continuous-unet")
    for label, (name, preset, kw) in models.items():
        m = build_model(name, preset=preset, img_size=size, **over, **kw) if name == "cnmunet" and preset != "continuous-unet" \
            else build_model(name, preset=preset, **over, **kw)
        rep = 1 if label == "continuous-unet" else args.repeat
        med, all_t, nfe = train_step_time(m, x, y, rep)
        res["train_step_s"][label], res["train_step_all_s"][label], res["nfe"][label] = med, all_t, nfe
        print(f"{label:30s} train step {med:8.2f} s  (NFE {nfe})", flush=True)
    base = res["train_step_s"]["unet (paper)"]
    res["ratio_vs_unet"] = {k: v / base for k, v in res["train_step_s"].items()}
    if "continuous-unet" in res["train_step_s"]:
        res["cnm_vs_continuous_unet"] = {k: v / res["train_step_s"]["continuous-unet"] for k, v in res["train_step_s"].items() if k.startswith("cnm")}

    # DUSE per image vs plain inference
    m = build_model("cnmunet", preset="paper", img_size=size, **over)
    record_cnm_stats(m, torch.randn(4, 3, size, size), batch_size=2)
    m.eval()
    img = torch.randn(1, 3, size, size)
    with torch.no_grad():
        m(img)
        t_inf = statistics.median([(lambda t0: (m(img), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(max(3, args.repeat))])
    times = {}
    for name in ("prompt", "duse"):
        ad = make_adapter(name, m)
        ad(img)                                       # warm-up image
        t = []
        for _ in range(max(3, args.repeat)):
            t0 = time.perf_counter(); ad(img); t.append(time.perf_counter() - t0)
        times[name] = statistics.median(t)
    res["inference_s_per_image"] = t_inf
    res["adapter_s_per_image"] = times
    res["adapter_ratio_vs_inference"] = {k: v / t_inf for k, v in times.items()}
    lines = [f"CNM-UNet speed, CPU, {args.threads} thread(s), torch {torch.__version__}, input {res['input']}"]
    for k, v in res["train_step_s"].items():
        lines.append(f"  train step {k:30s} {v:8.2f} s   x{res['ratio_vs_unet'][k]:.2f} vs UNet   NFE {res['nfe'][k]}")
    for k, v in res.get("cnm_vs_continuous_unet", {}).items(): lines.append(f"  {k} / continuous-unet = {v:.3f}")
    lines.append(f"  inference (paper preset, 1 image) {t_inf:.3f} s")
    for k, v in times.items(): lines.append(f"  {k} per image {v:.3f} s  = x{v / t_inf:.2f} inference")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).with_name("cnm_speed_results" + ("_quick" if args.quick else "") + args.suffix)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
