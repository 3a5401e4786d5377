"""Augmentations: the paired flip keeps image and profile consistent; everything is seeded."""

from __future__ import annotations

import torch

from plankton_stream.training import augment

SPEC = augment.AugmentSpec()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_paired_flip_flips_image_and_profile_of_the_same_particles():
    img = torch.zeros(64, 8, 8)
    img[:, :, :4] = 1.0  # bright left half
    prof = torch.linspace(-1, 1, 10).repeat(64, 3, 1)  # rising in time
    x, p = augment.paired_flip(img, prof, SPEC, gen())
    image_flipped = x[:, 0, -1] > x[:, 0, 0]
    profile_flipped = p[:, 0, 0] > p[:, 0, -1]
    assert torch.equal(image_flipped, profile_flipped)
    assert 10 < int(image_flipped.sum()) < 54  # about half


def test_same_generator_seed_same_augmentation():
    x, p = torch.randn(8, 16, 16), torch.rand(8, 5, 20) * 2 - 1
    a = augment.images(x, SPEC, gen(3)), augment.profiles(p, 8.92, SPEC, gen(3))
    b = augment.images(x, SPEC, gen(3)), augment.profiles(p, 8.92, SPEC, gen(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = augment.images(x, SPEC, gen(4))
    assert not torch.equal(a[0], c)


def test_profile_amplitude_is_scaled_in_signal_units_and_bands_dropped():
    mv = torch.full((400, 5, 30), 1000.0)
    p = 2 * torch.log1p(mv) / 8.92 - 1
    spec = augment.AugmentSpec(stretch=1.0)
    out = augment.profiles(p, 8.92, spec, gen())
    back = torch.expm1((out + 1) * 8.92 / 2)
    kept = back[back > 1]
    assert kept.min() > 1000 * 0.95 - 1 and kept.max() < 1000 * 1.05 + 1
    dropped = (out == -1).all(dim=2)  # a whole band set to "no signal"
    assert 0.1 < dropped.any(dim=1).float().mean() < 0.4 and dropped.sum(dim=1).max() == 1


def test_images_stay_in_range_and_shape():
    x = torch.rand(16, 32, 32) * 2 - 1
    out = augment.images(x, SPEC, gen())
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


def test_gain_augmentation_scales_each_band_log_uniformly_within_its_range():
    mv = torch.full((2000, 5, 30), 500.0)
    p = 2 * torch.log1p(mv) / 8.92 - 1
    spec = augment.AugmentSpec(stretch=1.0, band_drop=0.0, amplitude=0.0, gain=2.0)
    out = augment.profiles(p, 8.92, spec, gen())
    gains = torch.expm1((out[:, :, 15] + 1) * 8.92 / 2) / 500.0  # back to a factor per band
    assert float(gains.min()) >= 0.5 - 1e-3 and float(gains.max()) <= 2.0 + 1e-3
    logs = torch.log(gains)
    assert abs(float(logs.mean())) < 0.03  # log-uniform around 1
    assert float((gains[:, 0] - gains[:, 1]).abs().mean()) > 0.2  # bands drawn independently
    off = augment.profiles(p, 8.92, augment.AugmentSpec(stretch=1.0, band_drop=0.0, amplitude=0.0), gen())
    torch.testing.assert_close(off, p)
