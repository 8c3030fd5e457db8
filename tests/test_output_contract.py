"""The output contract: every network of ``fer_utils.models`` returns logits (a tensor) or a named output
with ``.logits``, and :func:`fer_utils.models.logits_of` is the one place that reads them."""
from __future__ import annotations

import ast
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch
from torch import nn
from fer_utils import models
from fer_utils.models import logits_of
from fer_utils.models.abaw import ABAWOutput
from fer_utils.models.two_level import TwoLevelOutput

PACKAGE = Path(__file__).resolve().parents[1] / "fer_utils"


def _zoo() -> dict[str, tuple]:
    """name -> (model, inputs, expected logits shape), one entry per top-level network (course sizes)."""
    from fer_utils.models import baselines, deep_emotion, ddamfn, faceapi, mini_xception, mgln, poster, poster_blocks
    from fer_utils.recipes import abaw, ran, scn, two_level
    from fer_utils.recipes import mgln as mgln_recipe

    grey48 = torch.zeros(2, 1, 48, 48)
    boxes = torch.tensor([[0.0, 0.0, 47.0, 47.0], [0.0, 0.0, 24.0, 24.0]]).expand(2, 2, 4).contiguous()
    net = mgln_recipe.build_model(mgln_recipe.SMOKE)
    return {
        "SmallCNN": (baselines.SmallCNN(), (grey48,), (2, 7)),
        "LeNet5": (baselines.LeNet5(), (grey48,), (2, 7)),
        "SmallKernelCNN": (baselines.SmallKernelCNN(widths=(8, 16, 32, 64)), (grey48,), (2, 7)),
        "DeepEmotion": (deep_emotion.DeepEmotion(), (grey48,), (2, 7)),
        "MiniXception": (mini_xception.MiniXception(), (torch.zeros(2, 1, 64, 64),), (2, 7)),
        "DDAMFN": (ddamfn.DDAMFN(7, 2, ddamfn.COURSE), (torch.zeros(2, 3, 64, 64),), (2, 7)),
        "TwoLevelAttentionNet": (two_level.build_model(two_level.SMOKE), (grey48,), (2, 7)),
        "MGLN": (net, mgln.example_inputs(net, 2), (2, 7)),
        "ABAWNet": (abaw.build_model(abaw.SMOKE), (torch.zeros(2, 3, 1, 40, 40),), (2, 3, 7)),
        "SCN": (scn.build_model(scn.SMOKE), (torch.zeros(2, 1, 32, 32),), (2, 7)),
        "RAN": (ran.build_model(ran.SMOKE), (grey48, boxes), (2, 7)),
        "FaceExpressionNet": (faceapi.FaceExpressionNet(), (torch.zeros(2, 3, 112, 112),), (2, 7)),
        "PosterCourse": (poster.PosterCourse(image_size=48), (torch.zeros(2, 3, 48, 48),), (2, 7)),
        "PosterViT": (poster_blocks.PosterViT(tokens=27, dim=64, depth=1, num_classes=7, num_heads=4, extras=False),
                      (torch.zeros(2, 27, 64),), (2, 7)),
    }


ZOO = _zoo()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_network_gives_logits_through_logits_of(name):
    model, inputs, shape = ZOO[name]
    with torch.no_grad():
        out = model.eval()(*inputs)
    logits = logits_of(out)
    assert isinstance(logits, torch.Tensor) and tuple(logits.shape) == shape, (name, type(out), logits.shape)
    assert isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list)) or hasattr(type(out), "_fields"), \
        f"{name} returns a bare tuple: return a NamedTuple with a logits field"


def test_every_model_file_has_a_network_in_the_contract_test():
    """A new model file whose top-level network is not listed above fails here (MTCNN: the detector test)."""
    covered = {inspect.getmodule(type(model)).__name__ for model, _, _ in ZOO.values()}
    covered.add("fer_utils.models.mtcnn")
    files = {f"fer_utils.models.{m.name}" for m in pkgutil.iter_modules(models.__path__)}
    assert files == covered, f"model files without a network in ZOO: {sorted(files - covered)}"


def test_named_outputs_are_read_by_name_not_position():
    """The two-level network puts ``va`` first: the logits are the second field, and logits_of finds them."""
    va, logits = torch.zeros(3, 2), torch.arange(21.0).view(3, 7)
    assert logits_of(TwoLevelOutput(va, logits, torch.ones(3, 4))) is logits
    au, expr = torch.zeros(3, 12), torch.ones(3, 7)
    assert logits_of(ABAWOutput(au, expr, torch.zeros(3, 2))) is expr


def test_tuples_and_detector_outputs_are_refused():
    from fer_utils.models.mtcnn import ONet, PNet, RNet

    with pytest.raises(TypeError, match="no logits"):
        logits_of((torch.zeros(2, 7), torch.zeros(2)))
    for net, size in ((PNet(), 12), (RNet(), 24), (ONet(), 48)):
        with torch.no_grad(), pytest.raises(TypeError, match="no logits"):
            logits_of(net(torch.zeros(1, 3, size, size)))


def test_only_logits_of_reads_the_logits_field():
    """Nothing in fer_utils reads a ``.logits`` attribute outside :func:`logits_of` (a field read by hand
    bypasses the contract: the next model whose logits are a property or a tensor would break there)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr == "logits" and isinstance(node.ctx, ast.Load):
                line = text.splitlines()[node.lineno - 1]
                if path.name != "__init__.py" or "models" not in path.parts:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {line.strip()}")
    assert not offenders, "read logits with fer_utils.models.logits_of:\n" + "\n".join(offenders)


def test_the_training_loop_scores_named_outputs_by_their_logits():
    """Regression: fer-train's Sums took output[0] (the two-level network's va) for any tuple."""
    from fer_utils.cli.train_loop import Context, Sums

    labels = torch.tensor([0, 1, 2, 3])
    perfect = torch.nn.functional.one_hot(labels, 7).float() * 5
    sums = Sums()
    sums.add(1.0, {}, TwoLevelOutput(torch.zeros(4, 2), perfect, torch.ones(4, 3)), labels)
    ctx = Context(0, 1, 0, torch.device("cpu"), None, 0)
    assert sums.reduce(ctx, "val")["val_accuracy"] == 1.0


def test_flop_macs_counts_in_eval_mode_and_puts_every_mode_back():
    """flop_macs: conv MACs by hand; a training parent with a frozen eval-mode child keeps both modes."""
    from fer_utils.models import flop_macs

    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model.train()
    model[1].eval()
    assert flop_macs(model, torch.zeros(1, 3, 8, 8)) == 4 * 6 * 6 * 3 * 3 * 3 + 4 * 6 * 6 * 2
    assert model.training and model[0].training and not model[1].training
    assert model[1].num_batches_tracked.item() == 0, "the count ran in eval mode: no statistics updated"
