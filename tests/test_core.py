"""Data, models, perturbations, the proposed loss and the feature distances, on real MNIST."""

from __future__ import annotations

import math

import pytest
import torch

from ppcore.config import make_config
from ppcore.data import TensorData, dataset_info, load_split
from ppcore.errors import PPCoreError
from ppcore.methods import METHODS, preset
from ppcore.metrics import feature_distances
from ppcore.models import MODELS, build_model
from ppcore.perturb import affine_transform, l2_noise, linf_sign_noise, random_spatial


@pytest.fixture(scope="module")
def batch():
    data = TensorData.load("mnist", "train", torch.device("cpu"), limit=64)
    return next(data.batches(64))


def test_mnist_loads_as_pixels_in_unit_range(batch):
    x, y = batch
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.max()) > 0.99
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))


def test_fashion_mnist_loads():
    images, labels = load_split("fashion-mnist", "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [1000] * 10


def test_missing_data_root_is_one_clear_error(tmp_path):
    with pytest.raises(PPCoreError, match="MNIST was not found under data root"):
        load_split("mnist", "train", tmp_path, download=False)


def test_batches_cover_every_image_once():
    data = TensorData.load("mnist", "test", torch.device("cpu"), limit=105)
    ys = torch.cat([y for _, y in data.batches(20, shuffle=True,
                                               generator=torch.Generator().manual_seed(1))])
    assert sorted(ys.tolist()) == sorted(data.labels.tolist())


@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("wrn", "vgg11", "vgg19")])
def test_mnist_models_map_images_to_logits(name, batch):
    model = build_model(name, dataset_info("mnist")).eval()
    assert model(batch[0][:4]).shape == (4, 10)


def test_mnist_net_is_the_papers_size():
    model = build_model("mnist-net", dataset_info("mnist"))
    n = sum(p.numel() for p in model.parameters())
    assert 200_000 < n < 250_000  # ~0.9 MB of float32 weights


@pytest.mark.parametrize("name,opts", [("wrn", dict(depth=10, width=1)), ("vgg11", {}),
                                       ("vgg19", {})])
def test_cifar_models(name, opts):
    model = build_model(name, dataset_info("cifar10"), **opts).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_wrn_depth_must_be_6n_plus_4():
    with pytest.raises(PPCoreError, match="6n\\+4"):
        build_model("wrn", dataset_info("cifar10"), depth=27, width=1)


def test_linf_noise_has_exactly_size_xi_and_stays_in_range(batch):
    x = batch[0]
    xi = 0.3
    noisy = linf_sign_noise(x, xi, torch.Generator().manual_seed(0))
    delta = noisy - x
    assert 0 <= float(noisy.min()) and float(noisy.max()) <= 1
    assert float(delta.abs().max()) == pytest.approx(xi, abs=1e-6)
    # where clipping did not bite, every pixel moved by exactly xi
    free = (x + xi <= 1) & (x - xi >= 0)
    assert torch.allclose(delta[free].abs(), torch.full_like(delta[free], xi), atol=1e-6)
    # and both signs occur about equally often
    assert 0.45 < float((delta[free] > 0).float().mean()) < 0.55


def test_l2_noise_has_norm_xi_before_clipping():
    x = torch.full((8, 1, 28, 28), 0.5)
    noisy = l2_noise(x, 1.0, torch.Generator().manual_seed(0))
    norms = (noisy - x).flatten(1).norm(dim=1)
    # a unit-norm Gaussian direction over 784 pixels stays far from the clip at +-0.5
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_spatial_pairs_stay_within_30_degrees_and_3_pixels(batch):
    x = batch[0]
    out, angle, tx, ty = random_spatial(x, 30.0, 3.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert float(angle.abs().max()) <= 30 and float(tx.abs().max()) <= 3
    assert float(ty.abs().max()) <= 3
    assert float(angle.abs().max()) > 20  # the range is used, not just its centre


def test_affine_transform_translates_by_whole_pixels():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 12] = 1.0
    zero = torch.zeros(1)
    shifted = affine_transform(x, zero, torch.tensor([3.0]), torch.tensor([-2.0]))
    assert shifted[0, 0, 8, 15] == pytest.approx(1.0, abs=1e-5)
    same = affine_transform(x, zero, zero, zero)
    assert torch.allclose(same, x, atol=1e-5)


def test_affine_rotation_by_90_degrees_moves_a_pixel_a_quarter_turn():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 4, 14] = 1.0  # above the centre
    rotated = affine_transform(x, torch.tensor([90.0]), torch.zeros(1), torch.zeros(1))
    peak = divmod(int(rotated.flatten().argmax()), 28)
    # a quarter turn about the centre (13.5, 13.5) puts it level with the centre, at one side
    assert peak[0] in (13, 14) and peak[1] in (4, 23)


def test_proposed_loss_equals_a_hand_computation(batch):
    torch.manual_seed(0)
    x, y = batch[0][:8], batch[1][:8]
    model = build_model("mnist-net", dataset_info("mnist"))
    cfg = make_config("mnist", method="proposed", lam=10.0, xi=0.3)
    out = METHODS["proposed"].loss(model, x, y, cfg, torch.Generator().manual_seed(5))

    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    noisy = (x + 0.3 * torch.where(z >= 0, 1.0, -1.0)).clamp(0, 1)
    with torch.no_grad():
        fc, fn = model(x), model(noisy)
    ce = 0.0
    for logits in (fc, fn):
        for i in range(8):
            ce += -(logits[i, y[i]] - torch.logsumexp(logits[i], 0)).item()
    ce /= 16  # the mean over the clean and the noisy halves: 1/(2m)
    reg = sum(((fc[i] - fn[i]) ** 2).sum().item() for i in range(8)) / 8
    assert float(out.terms["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(out.terms["reg"]) == pytest.approx(reg, rel=1e-4)
    assert out.loss.item() == pytest.approx(ce + 10.0 * reg, rel=1e-4)


def test_table5_readings_of_both_pairs_by_hand(batch):
    """proposed_noise_spatial: one pair per image, half noise, half spatial;
    proposed_noise_and_spatial: a noise and a spatial copy of every image, two pairing terms."""
    torch.manual_seed(0)
    x, y = batch[0][:8], batch[1][:8]
    model = build_model("mnist-net", dataset_info("mnist"))
    kw = dict(lam=10.0, xi=0.3, max_rot=30.0, max_trans=3.0)

    def sq(a, b):  # the batch mean of the squared l2 distance of the logits
        return sum(((a[i] - b[i]) ** 2).sum().item() for i in range(len(a))) / len(a)

    def ce_mean(logits, labels):
        return sum(-(logits[i, labels[i]] - torch.logsumexp(logits[i], 0)).item()
                   for i in range(len(labels))) / len(labels)

    gen = torch.Generator().manual_seed(5)
    noisy = linf_sign_noise(x, 0.3, gen)
    turned = random_spatial(x, 30.0, 3.0, gen)[0]
    with torch.no_grad():
        fc, fn, fs = model(x), model(noisy), model(turned)
    cfg = make_config("mnist", method="proposed_noise_and_spatial", **kw)
    out = METHODS["proposed_noise_and_spatial"].loss(model, x, y, cfg,
                                                     torch.Generator().manual_seed(5))
    ce = ce_mean(torch.cat([fc, fn, fs]), torch.cat([y, y, y]))  # over all 3m images
    reg = sq(fc, fn) + sq(fc, fs)
    assert float(out.terms["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(out.terms["reg"]) == pytest.approx(reg, rel=1e-4)
    assert out.loss.item() == pytest.approx(ce + 10.0 * reg, rel=1e-4)

    gen = torch.Generator().manual_seed(5)
    mixed = torch.cat([linf_sign_noise(x[:4], 0.3, gen), random_spatial(x[4:], 30.0, 3.0, gen)[0]])
    with torch.no_grad():
        fm = model(mixed)
    cfg = make_config("mnist", method="proposed_noise_spatial", **kw)
    out = METHODS["proposed_noise_spatial"].loss(model, x, y, cfg, torch.Generator().manual_seed(5))
    assert float(out.terms["ce"]) == pytest.approx(ce_mean(torch.cat([fc, fm]),
                                                           torch.cat([y, y])), rel=1e-5)
    assert float(out.terms["reg"]) == pytest.approx(sq(fc, fm), rel=1e-4)

def test_feature_distances_by_hand():
    clean = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    noisy = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    d = feature_distances(clean, noisy, labels)
    assert d["d_per"] == pytest.approx((1 + 0 + 2) / 3)
    assert d["d_intra"] == pytest.approx(5.0)  # the one same-class pair (0, 1)
    assert d["d_inter"] == pytest.approx((1.0 + math.sqrt(9 + 9)) / 2)


def test_presets_are_the_papers():
    # the perceptual presets train at the data set's own lr (no special case since issue 8)
    assert preset("proposed", "mnist") == {"lam": 10.0, "xi": 0.3}
    assert preset("proposed", "fashion-mnist") == {"lam": 10.0, "xi": 0.1}
    assert preset("proposed", "cifar10") == {"lam": 50.0, "xi": pytest.approx(8 / 255)}
    assert preset("ablation1", "mnist")["lam"] == 0
    assert preset("ablation2", "mnist")["xi"] == 4.0 and preset("ablation2", "cifar10")["xi"] == 0.2
    assert preset("pgd_at", "mnist") == {"eps": 0.3, "alpha": 0.01, "steps": 40,
                                         "optimizer": "adam", "lr": 1e-4, "batch_size": 50,
                                         "epochs": 84, "lr_milestones": ()}
    assert preset("pgd_at", "cifar10")["steps"] == 7


@pytest.mark.parametrize("overrides,message", [
    (dict(lam=-1.0), "lambda must be >= 0"),
    (dict(xi=1.5), "xi must be in \\[0, 1\\]"),
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(lr=0.0), "learning rate must be positive"),
    (dict(lam=float("nan")), "finite"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(PPCoreError, match=message):
        make_config("mnist", method="proposed", **overrides)


def test_eps_out_of_range_is_refused():
    with pytest.raises(PPCoreError, match="epsilon must be in \\[0, 1\\]"):
        make_config("mnist", method="pgd_at", eps=2.0)


def test_settings_a_method_does_not_read_are_not_recorded():
    cfg = make_config("mnist", method="normal", lam=3.0, xi=0.2)
    assert cfg.lam is None and cfg.xi is None
