"""Encoders, towers and losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from plankton_stream.models.crossmodal import CrossModalModel
from plankton_stream.models.losses import InfoNCE, SigmoidLoss
from plankton_stream.specs import ProfileEncoderSpec
from tests.conftest import TINY_MODEL, TINY_PRE


@pytest.mark.parametrize("kind", ["cnn", "transformer", "lstm"])
def test_towers_embed_into_the_unit_sphere(kind):
    spec = dataclasses.replace(TINY_MODEL, profile=ProfileEncoderSpec(kind=kind, width=8, blocks=(1, 1)))
    model = CrossModalModel(spec, TINY_PRE).eval()
    img = model.image(torch.randn(5, 32, 32), torch.rand(5, 2))
    prof = model.profile(torch.randn(5, 5, 32), torch.rand(5, 1))
    assert img.shape == prof.shape == (5, 16)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(prof.norm(dim=1), torch.ones(5))


def test_metadata_changes_the_embedding():
    tower = CrossModalModel(TINY_MODEL, TINY_PRE).image.eval()
    x = torch.randn(1, 32, 32)
    assert not torch.allclose(tower(x, torch.tensor([[0.1, 0.1]])), tower(x, torch.tensor([[0.9, 0.9]])))


@pytest.mark.parametrize("loss", [InfoNCE(), SigmoidLoss()])
def test_losses_prefer_matching_pairs(loss):
    a = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    matched = loss(a, a)
    shuffled = loss(a, a[torch.randperm(16)])
    assert matched < shuffled


def test_infonce_temperature_is_clamped_at_100():
    loss = InfoNCE()
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    a = torch.eye(4)
    assert loss.logits(a, a).max().item() == pytest.approx(100.0)


def test_sigmoid_loss_starts_with_bias_minus_ten_and_learns_it():
    loss = SigmoidLoss()
    assert loss.bias.item() == -10.0
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    loss(a, a).backward()
    assert loss.bias.grad is not None and loss.log_scale.grad is not None
