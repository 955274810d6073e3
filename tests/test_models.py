"""Models: shapes and sizes of the paper architectures, in-model normalisation, BatchNorm replacement."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import robustlib as rl
from robustlib.models import build_model, count_batchnorms, num_parameters, replace_batchnorm


@pytest.mark.parametrize("name,kw,params", [
    ("resnet18", {}, 11_173_962),
    ("preact_resnet18", {}, 11_172_170),  # with the final BN of Wong et al.'s file
    ("mnist_cnn", {}, 1_791_466),
])
def test_paper_architectures_have_their_published_sizes(name, kw, params):
    assert num_parameters(build_model(name, **kw)) == params


def test_wrn34_10_size():
    assert abs(num_parameters(build_model("wrn34_10")) - 46.16e6) < 0.05e6


@pytest.mark.parametrize("name,kw,shape", [
    ("resnet18", {"width": 8, "blocks": (1, 1, 1, 1)}, (2, 3, 32, 32)),
    ("resnet50", {"width": 4, "blocks": (1, 1, 1, 1)}, (2, 3, 32, 32)),
    ("preact_resnet18", {"width": 8}, (2, 3, 32, 32)),
    ("wrn34_10", {"depth": 10, "widen": 1}, (2, 3, 32, 32)),
    ("mnist_cnn", {"width": 4, "hidden": 16}, (2, 1, 28, 28)),
])
def test_tiny_versions_run(name, kw, shape):
    m = build_model(name, **kw)
    assert m(torch.rand(shape)).shape == (2, 10)


def test_nuat_extra_relu_block_changes_the_function():
    torch.manual_seed(0)
    a = build_model("resnet18", width=8, blocks=(1, 1, 1, 1))
    b = build_model("resnet18", width=8, blocks=(1, 1, 1, 1), extra_relu=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 3, 32, 32)
    a.eval(), b.eval()
    assert not torch.allclose(a(x), b(x))


def test_stage_outputs_and_stage_fn():
    m = build_model("resnet18", width=8, blocks=(1, 1, 1, 1)).eval()
    x = torch.rand(2, 3, 32, 32)
    outs = m.stage_outputs(x)
    assert [o.shape[1] for o in outs] == m.stage_channels == [8, 8, 16, 32, 64]
    assert [o.shape[-1] for o in outs] == [32, 32, 16, 8, 4]
    seen = []
    y = m(x, stage_fn=lambda i, z: seen.append(i) or z)
    assert seen == [0, 1, 2, 3, 4] and torch.allclose(y, m(x))


def test_normalisation_lives_inside_the_model():
    m = build_model("resnet18", width=8, blocks=(1, 1, 1, 1), normalize=((0.5,) * 3, (0.25,) * 3)).eval()
    plain = build_model("resnet18", width=8, blocks=(1, 1, 1, 1)).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(m(x), plain((x - 0.5) / 0.25), atol=1e-5)


class Tagged(nn.Module):
    def __init__(self, bn):
        super().__init__()
        self.inner = bn

    def forward(self, x):
        return self.inner(x)


def test_replace_batchnorm_swaps_every_bn():
    m = build_model("resnet18", width=8, blocks=(1, 1, 1, 1))
    n = count_batchnorms(m)
    assert n == 12  # stem + 2 per block + 3 projection shortcuts
    assert replace_batchnorm(m, Tagged) == n
    assert sum(isinstance(x, Tagged) for x in m.modules()) == n
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    # restricted by a predicate
    m2 = build_model("resnet18", width=8, blocks=(1, 1, 1, 1))
    assert replace_batchnorm(m2, Tagged, lambda name, bn: name.startswith("layer1")) == 2


def test_unknown_model_lists_valid_names():
    with pytest.raises(rl.UnknownNameError, match="Did you mean 'resnet18'"):
        build_model("resnet-18")
