"""Your own data, end to end: three folders written from the bundled MNI152 sample in the layouts users have
(nnU-Net v2 CT-like, Decathlon 4-channel, ISIC-style 2D), each planned, trained briefly from disk, predicted to
files and evaluated; plus the failure paths, each with the message it gives."""
import gzip, json, shutil
from pathlib import Path
import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
from medseg_lab.data import (write_sample_folder, dataset_from_folder, plan_dataset, inspect_folder, DatasetPlan,
                             crossval_splits)
from medseg_lab.train import TrainConfig, train
from medseg_lab.predict import predict, evaluate_folder, predict_image, load_predictor
from medseg_lab.metrics import dice

TINY = dict(model="unet", preset="tiny", epochs=1, iters_per_epoch=20, batch_size=2, lr=3e-3, progress=False,
            num_threads=1, eval_metrics=["dice", "hd95"])


def _train(root, tmp, spatial_dims, **data_kwargs):
    kw = dict(preprocess_workers=0, loader_workers=0, **data_kwargs)
    return train(TrainConfig(**TINY, data=str(root), spatial_dims=spatial_dims, out_dir=str(tmp / "runs"), data_kwargs=kw))


def _dice_file_vs_memory(run, root, summary, case_ids):
    "Dice per case from evaluate_folder's summary vs Dice of the in-memory prediction against the reader's label."
    model, plan, _ = load_predictor(run)
    src = dataset_from_folder(root)
    by_case = {r["case"]: r for r in summary["metric_per_case"]}
    for cid in case_ids:
        c = src.load_case(src.case_ids.index(cid))
        p = predict_image(model, c["image"], c["spacing"], plan).argmax(0)
        mem = dice(torch.from_numpy(p)[None], torch.from_numpy(c["label"])[None], num_classes=plan.num_classes)[0].numpy()
        key = cid if cid in by_case else next(k for k in by_case if cid.startswith(k))
        written = nib.load(by_case[key]["prediction_file"])
        assert np.array_equal(np.asarray(written.dataobj), p)   # the file holds exactly the in-memory prediction
        got = np.array([by_case[key]["metrics"][str(k)]["Dice"] for k in range(1, plan.num_classes)], dtype=float)
        np.testing.assert_allclose(np.nan_to_num(got, nan=-1), np.nan_to_num(mem, nan=-1), atol=1e-6)


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    "(a) nnU-Net v2 raw folder: int16 CT-like intensities, 1 x 1 x 3 mm, oblique flipped affine, unlabelled imagesTs."
    tmp = tmp_path_factory.mktemp("ct")
    root = write_sample_folder(tmp / "Dataset101_MNICT", "nnunet_v2", n_cases=4, n_test=1, size=(40, 48, 36), seed=0)
    return tmp, root, _train(root, tmp, 3, memory_budget_gb=0.25)


def test_ct_folder_is_what_the_issue_asks(ct_run):
    _, root, _ = ct_run
    img = nib.load(str(root / "imagesTr" / "mnict_000_0000.nii.gz"))
    assert img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.header.get_zooms(), (1, 1, 3), atol=1e-5)
    R = img.affine[:3, :3] / np.array([1, 1, 3])
    assert np.linalg.det(R) < 0 and np.abs(R - np.diag(np.diag(R))).max() > 0.1   # flipped and oblique


def test_ct_plan_follows_nnunet_rules(ct_run):
    "Target spacing = nnU-Net's rule on the files' spacings; CT normalisation = foreground 0.5/99.5 percentiles, mean, std."
    _, root, run = ct_run
    plan = DatasetPlan.load(run.run_dir / "plan.json")
    imgs = sorted((root / "imagesTr").glob("*.nii.gz")); labs = sorted((root / "labelsTr").glob("*.nii.gz"))
    spacings = np.array([nib.load(str(f)).header.get_zooms()[:3] for f in imgs], float)
    assert plan.target_spacing == pytest.approx(list(np.median(spacings, 0)), abs=1e-6)   # ratio 3 is not > 3: median
    assert plan.anisotropic_axis is None
    fg = np.concatenate([np.asarray(nib.load(str(i)).dataobj, float)[np.asarray(nib.load(str(l)).dataobj) > 0]
                         for i, l in zip(imgs, labs)])
    n = plan.normalization[0]
    assert n["scheme"] == "ct" and not n["use_nonzero_mask"]
    want = [*np.percentile(fg, [0.5, 99.5]), fg.mean(), fg.std()]
    np.testing.assert_allclose([n["lower"], n["upper"], n["mean"], n["std"]], want, rtol=1e-5)
    assert plan_dataset(root, preset="tiny", memory_budget_gb=0.25, progress=False, num_workers=0) == plan


def test_ct_train_predict_evaluate(ct_run):
    tmp, root, run = ct_run
    m = json.loads((run.run_dir / "metrics.json").read_text())
    assert "val" in m and "test" not in m and m["data"]["n_test"] == 0   # imagesTs is unlabelled: the fold's metrics
    assert m["val"]["mean"]["dice/mean"] > 0.3, m["val"]["mean"]   # it learned from disk (0.75 measured; floor with margin)
    splits = json.loads((run.run_dir / "splits.json").read_text())
    assert splits == crossval_splits([f"mnict_{i:03d}" for i in range(4)])
    out = predict(run, root / "imagesTs", tmp / "pred_ts", progress=False)
    src, dst = nib.load(str(root / "imagesTs" / "mnict_004_0000.nii.gz")), nib.load(str(out[0]))
    assert dst.shape == src.shape and np.array_equal(dst.affine, src.affine)
    val = splits[0]["val"]
    predict(run, [root / "imagesTr" / f"{c}_0000.nii.gz" for c in val], tmp / "pred_val", progress=False)
    s = evaluate_folder(tmp / "pred_val", root / "labelsTr", progress=False)
    assert s["n_cases"] == len(val) and all(r["spacing"] == [1.0, 1.0, 3.0] for r in s["metric_per_case"])
    _dice_file_vs_memory(run, root, s, val)
    with pytest.raises(FileExistsError, match="never overwrites"):
        predict(run, root / "imagesTs", tmp / "pred_ts", progress=False)


def test_ct_corrupted_file_and_flipped_label_are_named(ct_run, tmp_path):
    _, root, _ = ct_run
    bad = tmp_path / "Dataset102_Bad"; shutil.copytree(root, bad)
    lab = bad / "labelsTr" / "mnict_002.nii.gz"
    img = nib.load(str(lab)); A = img.affine.copy(); A[:3, 1] *= -1
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), A), str(lab))
    with pytest.raises(ValueError, match=r"case mnict_002: label file .*mnict_002.nii.gz has a different affine"):
        plan_dataset(bad, progress=False, num_workers=0)
    with pytest.raises(ValueError, match="different affine"):
        train(TrainConfig(**TINY, data=str(bad), spatial_dims=3, out_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()   # nothing written before the data is known to be good
    shutil.copy(root / "labelsTr" / "mnict_002.nii.gz", lab)
    corrupt = bad / "imagesTr" / "mnict_001_0000.nii.gz"
    corrupt.write_bytes(gzip.compress(b"this is not a NIfTI file")[:25])
    with pytest.raises(OSError, match=f"cannot read image file {corrupt}"):
        dataset_from_folder(bad)


@pytest.fixture(scope="module")
def mr_run(tmp_path_factory):
    "(b) Decathlon folder with 4-channel 4D images."
    tmp = tmp_path_factory.mktemp("mr")
    root = write_sample_folder(tmp / "Task01_MNIMR", "msd", n_cases=3, n_test=1, size=(32, 32, 32), seed=1)
    return tmp, root, _train(root, tmp, 3, memory_budget_gb=0.25)


def test_msd_four_channels_end_to_end(mr_run):
    tmp, root, run = mr_run
    plan = DatasetPlan.load(run.run_dir / "plan.json")
    assert plan.channel_names == ["T1w", "T2w", "FLAIR", "T1gd"] and [n["scheme"] for n in plan.normalization] == ["zscore"] * 4
    assert run.model.config["in_channels"] == 4
    out = predict(run, root / "imagesTs", tmp / "pred_ts", progress=False, save_probabilities=True)
    src, dst = nib.load(str(root / "imagesTs" / "mnimr_003.nii.gz")), nib.load(str(out[0]))
    assert src.shape[-1] == 4 and dst.shape == src.shape[:3] and np.array_equal(dst.affine, src.affine)
    assert np.load(tmp / "pred_ts" / "mnimr_003.npz")["probabilities"].shape == (3, *src.shape[:3])
    val = json.loads((run.run_dir / "splits.json").read_text())[0]["val"]
    predict(run, [root / "imagesTr" / f"{c}.nii.gz" for c in val], tmp / "pred_val", progress=False)
    s = evaluate_folder(tmp / "pred_val", root / "labelsTr", progress=False)
    _dice_file_vs_memory(run, root, s, val)


@pytest.fixture(scope="module")
def isic_run(tmp_path_factory):
    "(c) ISIC-style 2D folder: RGB JPEGs of different sizes, 0/255 PNG masks, train/ + test/."
    tmp = tmp_path_factory.mktemp("isic")
    root = write_sample_folder(tmp / "lesions", "folder2d", n_cases=5, n_test=2, seed=2)
    return tmp, root, _train(root, tmp, 2, resize_to=64)


def test_isic_folder_end_to_end(isic_run):
    from PIL import Image
    tmp, root, run = isic_run
    sizes = {Image.open(p).size for p in (root / "train" / "images").glob("*.jpg")}
    assert len(sizes) > 1 and all(Image.open(p).mode == "RGB" for p in (root / "train" / "images").glob("*.jpg"))
    assert {v for p in (root / "train" / "masks").glob("*.png") for v in np.unique(np.asarray(Image.open(p)))} <= {0, 255}
    plan = DatasetPlan.load(run.run_dir / "plan.json")
    assert (plan.mode_2d, plan.resize_to, plan.label_values) == ("resize", [64, 64], [0, 255])
    assert {"val", "test"} <= set(run.metrics)   # labelled test/ cases: test metrics too
    outs = predict(run, root / "test" / "images", tmp / "pred", progress=False)
    for o in outs:
        im, pm = Image.open(root / "test" / "images" / f"{o.stem}.jpg"), np.asarray(Image.open(o))
        assert pm.shape == (im.height, im.width) and set(np.unique(pm).tolist()) <= {0, 255}
    s = evaluate_folder(tmp / "pred", root / "test" / "masks", progress=False)
    assert s["n_cases"] == 2 and s["num_classes"] == 2
    model, _, _ = load_predictor(run)
    test = dataset_from_folder(root, "test")
    by_case = {r["case"]: r for r in s["metric_per_case"]}
    for i, cid in enumerate(test.case_ids):
        c = test.load_case(i)
        p = predict_image(model, c["image"], c["spacing"], plan).argmax(0)
        mem = float(dice(torch.from_numpy(p)[None], torch.from_numpy(c["label"])[None], num_classes=2)[0, 0])
        got = by_case[cid]["metrics"]["1"]["Dice"]
        assert (np.isnan(mem) and np.isnan(got)) or abs(got - mem) < 1e-6


def test_2d_mask_and_size_errors_are_named(isic_run, tmp_path):
    from PIL import Image
    _, root, _ = isic_run
    bad = tmp_path / "lesions_bad"; shutil.copytree(root, bad)
    m = next((bad / "train" / "masks").glob("*.png"))
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(m)
    with pytest.raises(ValueError, match=f"label file {m} has size \\(10, 12\\) but image file"):
        dataset_from_folder(bad)
    m.unlink()
    with pytest.raises(FileNotFoundError, match="has no mask"):
        inspect_folder(bad)


def test_data_values_fail_before_any_run_folder(tmp_path):
    with pytest.raises(ValueError, match="Unknown data 'mni152_tisue'"):
        TrainConfig(data="mni152_tisue")
    with pytest.raises(ValueError, match="set data_root"):
        TrainConfig(data="isic2018")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TrainConfig(**TINY, data=str(tmp_path / "nowhere"), out_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()


def test_train_eval_experiment_takes_a_folder(tmp_path, run_experiment):
    "The papermill experiment behind `make run` trains on a data set folder with the same `data` value train() takes."
    root = write_sample_folder(tmp_path / "Task02_MNIMR", "msd", n_cases=3, n_test=0, size=(32, 32, 32), seed=4)
    out_nb, runs = run_experiment("train_eval", model="unet", preset="tiny", data=str(root), spatial_dims=3, epochs=1,
                                  time_budget_s=60, batch_size=2, data_kwargs={"memory_budget_gb": 0.25, "loader_workers": 0})
    assert len(runs) == 1
    for f in ["plan.json", "splits.json", "metrics.json", "results.md", "learning_curves.png", "predictions.png"]:
        assert (runs[0] / f).exists(), f
    assert "val volumes" in out_nb.read_text()   # no labelled test cases: the table reports the validation fold
