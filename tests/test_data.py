"""Data: both on-disk layouts, corrupt shards, the hold-out split, GPU-style batching and augmentation."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

import robustlib as rl
from robustlib.data import Augment, BatchIterator, holdout_split, load_dataset


def test_shared_cifar10_shards_load_in_order(data_root):
    tr = load_dataset("cifar10", "train", root=data_root, limit=13000)
    assert tr.x.shape == (13000, 3, 32, 32) and tr.x.dtype == torch.uint8
    # the first shard holds 12 500 images; the limit must reach into the second one
    z0 = np.load(data_root / "cifar10" / "train-0.npz")
    z1 = np.load(data_root / "cifar10" / "train-1.npz")
    assert torch.equal(tr.x[0], torch.from_numpy(z0["x"][0]).permute(2, 0, 1))
    assert torch.equal(tr.x[12500], torch.from_numpy(z1["x"][0]).permute(2, 0, 1))
    assert tr.y[:10].tolist() == z0["y"][:10].tolist()


def test_shared_cifar10_test_split_is_the_first_1000_and_says_so(data_root):
    te = load_dataset("cifar10", "test", root=data_root)
    assert len(te) == 1000 and te.full_size == 10000
    assert torch.bincount(te.y).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    with pytest.raises(rl.NotEnoughDataError, match="holds only 1000 of the 10000"):
        te.head(1001)


def test_mnist_torchvision_raw_layout(data_root):
    te = load_dataset("mnist", "test", root=data_root)
    assert te.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(te.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_cifar10_torchvision_pickle_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, 20))
        expected.append((data, labels))
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    tr = load_dataset("cifar10", "train", root=tmp_path)
    te = load_dataset("cifar10", "test", root=tmp_path)
    assert len(tr) == 100 and len(te) == 20
    assert torch.equal(tr.x[20].flatten(), torch.from_numpy(expected[1][0][0]))
    assert te.y.tolist() == [int(v) for v in expected[5][1]]


def test_truncated_shard_is_rejected_and_named(tmp_path, data_root):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    shutil.copy(data_root / "cifar10" / "test.npz", folder / "test.npz")
    raw = (data_root / "cifar10" / "train-0.npz").read_bytes()
    (folder / "train-0.npz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(rl.CorruptFileError, match="train-0.npz.*truncated"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_shard_with_wrong_arrays_is_rejected(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    np.savez(folder / "train-0.npz", x=np.zeros((4, 32, 32, 3), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(rl.CorruptFileError, match="x must be uint8"):
        load_dataset("cifar10", "train", root=tmp_path)
    np.savez(folder / "train-0.npz", images=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(rl.CorruptFileError, match="lacks the arrays 'x' and 'y'"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_shards_concatenate_in_natural_name_order(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for i in (0, 2, 10):
        np.savez(folder / f"train-{i}.npz", x=np.full((2, 4, 4, 3), i, np.uint8), y=np.full(2, i % 10, np.int64))
    ds = load_dataset("cifar10", "train", root=tmp_path)
    assert ds.x[:, 0, 0, 0].tolist() == [0, 0, 2, 2, 10, 10]


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(rl.DatasetNotFoundError) as e:
        load_dataset("cifar10", "train", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar10") in msg and "cifar-10-batches-py" in msg and "ROBUSTLIB_DATA" in msg
    with pytest.raises(rl.DatasetNotFoundError, match="MNIST/raw"):
        load_dataset("mnist", "test", root=tmp_path)


def test_unknown_dataset_and_split_list_valid_names():
    with pytest.raises(rl.UnknownNameError, match="Valid dataset names: cifar10, mnist"):
        load_dataset("cifar-10")
    with pytest.raises(rl.ConfigError, match="valid splits: train, test, val"):
        load_dataset("synthetic", "dev")


def test_holdout_split_takes_the_first_images_of_each_class():
    ds = load_dataset("synthetic", "train", n=300)
    train, val = holdout_split(ds, per_class=5)
    assert len(val) == 50 and len(train) == 250
    assert torch.bincount(val.y, minlength=10).tolist() == [5] * 10
    for c in range(10):
        first = torch.nonzero(ds.y == c).squeeze(1)[:5]
        assert torch.equal(val.x[val.y == c], ds.x[first])
    with pytest.raises(rl.NotEnoughDataError):
        holdout_split(ds, per_class=100)


def test_synthetic_is_deterministic_and_split_disjoint():
    a = load_dataset("synthetic", "train", n=100)
    b = load_dataset("synthetic", "train", n=100)
    t = load_dataset("synthetic", "test", n=100)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, t.x)


def test_augment_crop_flip_and_cutout():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    flip_only = Augment(crop_padding=0, flip=True)(x, g)
    plain = x.float() / 255
    for i in range(16):  # each image is either unchanged or mirrored
        assert torch.equal(flip_only[i], plain[i]) or torch.equal(flip_only[i], plain[i].flip(-1))
    out = Augment(crop_padding=4, fill=0)(x, g)
    assert out.shape == (16, 3, 8, 8) and 0 <= out.min() and out.max() <= 1
    cut = Augment(crop_padding=0, flip=False, cutout=4)(x, g)
    changed = (cut != plain).flatten(1).any(1)
    assert changed.float().mean() > 0.5


def test_batch_iterator_epochs_are_reproducible_and_cover_the_data():
    ds = load_dataset("synthetic", "train", n=100)
    it = BatchIterator(ds, 32, shuffle=True, augment=None, seed=3)
    assert len(it) == 3
    e0 = [y for _, y in it.epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(e0, [y for _, y in it.epoch(0)]))
    assert not all(torch.equal(a, b) for a, b in zip(e0, [y for _, y in it.epoch(1)]))
    full = BatchIterator(ds, 32, shuffle=False, drop_last=False)
    assert torch.equal(torch.cat([y for _, y in full]), ds.y)


def _checker(b: int, h: int, w: int) -> torch.Tensor:
    """uint8 images of 0/255 checks: any Cutout patch's mean (≈ ½) differs from every pixel it replaces."""
    c = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).to(torch.uint8) * 255
    return c.expand(b, 3, h, w).contiguous()


def test_cutout_16_zeroes_a_16x16_patch_and_its_centre_covers_every_pixel():
    """Finlay & Oberman's "Cutout 16" (DeVries & Taylor's Cutout): side exactly 16 inside the image, centre uniform
    over all H × W pixels, the square clipped at the border."""
    aug = Augment(crop_padding=0, flip=False, cutout=16)
    x = _checker(3, 32, 32)
    params = {"oy": torch.zeros(3, dtype=torch.long), "ox": torch.zeros(3, dtype=torch.long),
              "cy": torch.tensor([16, 0, 31]), "cx": torch.tensor([10, 0, 31])}
    changed = (aug.apply(x, params) != x.float() / 255).any(1)            # (B, H, W)
    assert changed[0].sum() == 256                                        # interior: 16 × 16
    rows, cols = torch.nonzero(changed[0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 23, 2, 17)
    assert changed[1].sum() == 8 * 8 and changed[2].sum() == 9 * 9       # corners: rows/cols c−8 … c+7, clipped
    g = torch.Generator().manual_seed(0)
    p = aug.sample(4000, 32, 32, g, "cpu")
    assert set(p["cy"].tolist()) == set(range(32)) and set(p["cx"].tolist()) == set(range(32))
    with pytest.raises(rl.ConfigError, match="Cutout side"):
        Augment(cutout=-1)


def test_clips_of_another_length_than_the_video_model_is_built_for_are_refused():
    from robustlib.models.video import synthetic_clips, unstack_clips
    clips = synthetic_clips("test", 4, frames=5, size=16).images()           # 4 × 3 × (5·16) × 16
    assert unstack_clips(clips, 5).shape == (4, 3, 5, 16, 16)
    with pytest.raises(rl.ConfigError, match="frames=3"):
        unstack_clips(clips, 3)
