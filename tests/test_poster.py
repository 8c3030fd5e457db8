"""POSTER V2 (fer_utils.models.poster): the authors' state dict key for key, the counts of their README, each quirk of
their code that we reproduce, and the course configuration's arms."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fer_utils.models import logits_of
from fer_utils.models.poster import (
    MODES, PosterCourse, PosterV2, TwoWayCrossAttention, WindowFusion, called_parameters, count_macs,
    load_authors_state_dict,
)
from fer_utils.models.poster_blocks import IRUnit, LandmarkWindowAttention, window_partition, window_queries

TSV = Path(__file__).parent / "data" / "posterv2_state_dict.tsv"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "relative_position_index")
DEAD = ("VIT.patch_embed", "VIT.eca_block", "VIT.CON1", "VIT.IRLinear1", "VIT.IRLinear2", "VIT.blocks.0.conv",
        "VIT.blocks.1.conv", "ir_back.output_layer")


def _rows() -> list[tuple[str, tuple[int, ...], str, int]]:
    lines = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines() if not line.startswith("#")]
    assert lines[0] == ["key", "shape", "dtype", "numel"]
    return [(k, tuple(int(s) for s in shape.split(",") if s), dtype, int(n)) for k, shape, dtype, n in lines[1:]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> PosterV2:
    torch.manual_seed(0)
    return PosterV2().eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def logits(model, image) -> torch.Tensor:
    with torch.no_grad():
        return model(image)


# ---------------------------------------------------------------- the authors' state dict, counts, output

def test_state_dict_keys_shapes_and_dtypes_equal_the_authors_in_order(model):
    rows = _rows()
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch."), v.numel()) for k, v in model.state_dict().items()]
    assert len(rows) == len(ours) == 747
    assert ours == rows


def test_the_authors_state_dict_holds_58_3_million_parameters(model):
    params = sum(n for k, _, _, n in _rows() if not k.endswith(BUFFERS))
    assert params == 58_316_594 == sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 57_309_346  # landmark net frozen


def test_forward_returns_logits(logits):
    out = logits
    assert isinstance(out, torch.Tensor) and logits_of(out).shape == (1, 7) and torch.isfinite(out).all()


def test_counts_reproduce_the_readme_43_7m_and_8_4g(model, image):
    counts = called_parameters(model, image)
    assert counts.total == 58_316_594
    assert counts.called == 43_849_957              # every parameter whose module a forward calls
    assert counts.called_leaf == 43_724_311         # thop's rule: the README's 43.7M
    assert counts.uncalled == DEAD                  # quirk 9: built, never called (14,466,637 parameters)
    assert counts.total - counts.called == 14_466_637
    macs = count_macs(model, image)
    assert macs.thop == 8_482_266_176               # thop 0.1.1's rules: the README's 8.4G
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    assert macs.total == counter.get_total_flops() // 2  # conv + linear + attention products = FLOPs / 2


def test_a_module_prefixed_checkpoint_loads_strictly(model):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["VIT.head.linear.bias"] = torch.arange(7.0)
    other = PosterV2()
    result = load_authors_state_dict(other, {"state_dict": {"module." + k: v for k, v in sd.items()}})
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(other.VIT.head.linear.bias, torch.arange(7.0))
    del sd["embed_v.proj.bias"]
    with pytest.raises(RuntimeError, match="embed_v.proj.bias"):
        load_authors_state_dict(other, sd)


# ---------------------------------------------------------------- the quirks (numbered as in the docstring)

def test_quirk1_a_224_image_is_read_at_112_by_nearest_neighbour(model, image, logits):
    odd = image.clone()
    odd[:, :, 1::2, :] = 5.0     # rows the nearest resize skips
    odd[:, :, :, 1::2] = -5.0    # and columns
    assert torch.equal(F.interpolate(image, size=112), image[:, :, ::2, ::2])
    with torch.no_grad():
        assert torch.equal(model(odd), logits)


def test_quirk2_each_window_is_the_whole_map(model):
    assert [tuple(getattr(model, f"attn{i}").relative_position_index.shape) for i in (1, 2, 3)] == \
        [(784, 784), (196, 196), (49, 49)]
    assert [tuple(getattr(model, f"attn{i}").relative_position_bias_table.shape) for i in (1, 2, 3)] == \
        [(3025, 2), (729, 4), (169, 8)]
    windows, _ = model.window1(torch.zeros(2, 64, 28, 28))
    assert windows.shape == (2, 784, 64)  # one window per image


def test_quirk3_the_shortcut_is_the_normalised_map_and_quirk4_gammas_start_at_1e_5(model):
    for i in (1, 2, 3):
        ffn = getattr(model, f"ffn{i}")
        assert torch.all(ffn.gamma1 == 1e-5) and torch.all(ffn.gamma2 == 1e-5)
    x = torch.randn(1, 64, 56, 56)
    q = torch.randn(1, 64, 28, 28)
    ffn = model.ffn1
    saved = ffn.gamma1.detach().clone(), ffn.gamma2.detach().clone()
    try:
        with torch.no_grad():
            ffn.gamma1.zero_()
            ffn.gamma2.zero_()
            out = model.fuse(1, x, q)
            expected = model.window1.norm(model.conv1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    finally:
        with torch.no_grad():
            ffn.gamma1.copy_(saved[0])
            ffn.gamma2.copy_(saved[1])
    assert torch.allclose(out, expected, atol=1e-6)


def test_quirk5_the_7_class_file_ignores_num_classes():
    assert PosterV2(num_classes=8).VIT.head.linear.out_features == 7
    assert PosterV2(num_classes=8, follow_num_classes=True).VIT.head.linear.out_features == 8


def test_quirk6_the_vit_has_8_heads_whatever_its_width(model):
    assert [b.attn.num_heads for b in model.VIT.blocks] == [8, 8]
    assert model.VIT.blocks[0].attn.scale == 96 ** -0.5


def test_quirk7_the_frozen_landmark_net_follows_train_mode(model, image):
    assert not any(p.requires_grad for p in model.face_landback.parameters())
    saved = {k: v.clone() for k, v in model.face_landback.state_dict().items()}
    try:
        model.train()
        assert model.face_landback.training
        with torch.no_grad(), pytest.raises(ValueError, match="more than 1 value per channel"):
            model(image)  # the 136-d head's BatchNorm1d on a batch of one
        drifted = model.face_landback.conv1.bn.running_mean
        assert not torch.equal(drifted, saved["conv1.bn.running_mean"])  # its running stats moved all the same
    finally:
        model.eval()
        model.face_landback.load_state_dict(saved)


def test_quirk8_the_landmark_head_runs_and_is_thrown_away(model, image, logits):
    seen = []
    handle = model.face_landback.output_layer.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    saved = model.face_landback.output_layer.linear.weight.detach().clone()
    try:
        with torch.no_grad():
            model.face_landback.output_layer.linear.weight.mul_(-3.0)
            after = model(image)
    finally:
        handle.remove()
        with torch.no_grad():
            model.face_landback.output_layer.linear.weight.copy_(saved)
    assert seen == [torch.Size([1, 136])] and torch.equal(after, logits)


# ---------------------------------------------------------------- blocks against their formulas

def test_window_attention_is_the_formula():
    torch.manual_seed(0)
    attn = LandmarkWindowAttention(dim=8, num_heads=2, window_size=3).eval()
    x, q = torch.randn(2, 9, 8), torch.randn(2, 2, 9, 4)
    k, v = attn.qkv(x).split(8, dim=-1)
    k, v = k.view(2, 9, 2, 4).transpose(1, 2), v.view(2, 9, 2, 4).transpose(1, 2)
    coords = [(i // 3, i % 3) for i in range(9)]
    index = torch.tensor([[(a[0] - b[0] + 2) * 5 + a[1] - b[1] + 2 for b in coords] for a in coords])
    bias = attn.relative_position_bias_table[index].permute(2, 0, 1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4) + bias, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 9, 8))
    assert torch.equal(attn.relative_position_index, index)
    assert torch.allclose(attn(x, q), expected, atol=1e-6)


def test_an_ir_unit_with_equal_widths_subsamples_its_shortcut():
    unit = IRUnit(4, 4, 2).eval()
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(unit.shortcut_layer(x), x[:, :, ::2, ::2])


# ---------------------------------------------------------------- the course configuration

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [48, 64])
def test_course_arms_give_logits(mode, size):
    torch.manual_seed(0)
    net = PosterCourse(num_classes=7, image_size=size, mode=mode).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    assert sum(p.numel() for p in net.parameters()) < 500_000
    assert (mode == "image_only") != hasattr(net, "face_landback")
    assert all(isinstance(f, TwoWayCrossAttention if mode == "v1" else WindowFusion) for f in net.fusions)
    if mode != "image_only":
        with torch.no_grad():
            assert net.landmarks(torch.randn(2, 3, size, size)).shape == (2, 136)


def test_course_grey_input_and_small_windows():
    net = PosterCourse(num_classes=5, in_channels=1, image_size=64, windows=(8, 4, 2)).eval()
    assert tuple(net.fusions[0].attn.relative_position_index.shape) == (64, 64)
    with torch.no_grad():
        assert net(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    with pytest.raises(ValueError, match="windows"):
        PosterCourse(image_size=64, windows=(5, 4, 4))
    with pytest.raises(ValueError, match="mode"):
        PosterCourse(mode="v3")


def test_course_window_queries_stay_in_their_window():
    """With 2x2 windows on a 4x4 map, changing the landmark map inside one window changes only that window."""
    torch.manual_seed(0)
    fusion = WindowFusion(dim=8, num_heads=2, window=2, layer_scale=1.0).eval()
    image, lm = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    moved = lm.clone()
    moved[:, :, :2, :2] += 3.0  # the top-left window
    with torch.no_grad():
        diff = (fusion(image, lm) - fusion(image, moved)).abs().sum(1)[0]
    assert diff[:2, :2].min() > 0 and diff[2:].max() == 0 and diff[:, 2:].max() == 0
    q = window_queries(lm, 2, 2)
    assert q.shape == (4, 2, 4, 4) and torch.equal(q[0].transpose(0, 1).reshape(4, 8),
                                                    window_partition(lm.permute(0, 2, 3, 1), 2)[0])
