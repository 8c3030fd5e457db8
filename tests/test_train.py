"""The training loop's small parts (fer_utils.train): the plateau rule with a first epoch, the epoch sums
shared with fer-train, the class-balanced weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_utils.train import LossSums, Plateau, class_balanced_weights, fit


def test_plateau_start_holds_the_rule_back_until_that_epoch():
    flat = [1.0] * 6                                   # no improvement after epoch 1
    assert Plateau(patience=2).reached(flat[:3])      # the plain rule: after patience + 1 epochs
    assert [Plateau(patience=2, start=5).reached(flat[:e]) for e in range(1, 7)] == [False] * 4 + [True] * 2
    assert Plateau(patience=2, start=1) == Plateau(patience=2)
    falling = [1.0, 0.9, 0.8, 0.7, 0.6]
    assert not Plateau(patience=2, start=3).reached(falling)   # start never makes a plateau, it only delays one


def test_plateau_prints_start_only_when_it_is_set():
    assert repr(Plateau(3, 1e-3, "val_loss")) == "Plateau(patience=3, tolerance=0.001, monitor='val_loss', mode='min')"
    assert repr(Plateau(3, start=6)).endswith("mode='min', start=6)")


def test_fit_does_not_stop_before_the_start_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)        # nothing moves: a plateau from epoch 1 on
    history = fit(model, data, 10, optimizer, val_loader=data, progress=False, stop=Plateau(patience=1, start=7))
    assert history["epochs_run"] == 7 and history["plateaued"]


def test_loss_sums_weigh_batches_by_their_samples_and_skip_tensor_logs():
    sums = LossSums("loss", "log_")
    sums.add(1.0, {"loss": 1.0, "ce": 0.5, "k": 2, "logits": torch.zeros(2, 7)}, 2)
    sums.add(4.0, {"ce": 2.0}, 1)
    assert sums.count == 3 and sums.means() == {"loss": 2.0, "log_ce": 1.0, "log_k": 4 / 3}


def test_class_balanced_weights_are_one_over_the_class_count():
    weights = class_balanced_weights([0, 0, 0, 1, 2, 2])
    assert weights.dtype == torch.float64
    assert weights.tolist() == pytest.approx([1 / 3] * 3 + [1.0] + [0.5] * 2)
    for bad in ([], [[0, 1]], [-1, 0]):
        with pytest.raises(ValueError, match="class indices"):
            class_balanced_weights(torch.tensor(bad, dtype=torch.long))


def _bn_net() -> nn.Module:
    return nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_bn_loader_recomputes_batchnorm_statistics_over_its_inputs_before_validation():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4) * 3 + 5, torch.randint(0, 2, (64,))
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    clean = 2 * torch.randn(40, 4) - 1                              # the inputs whose statistics validation should use
    seen = []

    def on_epoch(epoch, history):                                 # runs after validation: the statistics it used
        seen.append((model[0].running_mean.clone(), model[0].running_var.clone()))

    model = _bn_net()
    fit(model, train, 2, torch.optim.SGD(model.parameters(), lr=0.1), val_loader=train, progress=False,
        on_epoch=on_epoch, bn_loader=[(clean[:20],), (clean[20:],)])
    for mean, var in seen:                                        # equal batches: the population's statistics
        torch.testing.assert_close(mean, clean.mean(0))
        torch.testing.assert_close(var, clean.var(0), rtol=0.06, atol=0.0)   # update_bn: mean of unbiased batch variances
    plain = _bn_net()
    fit(plain, train, 2, torch.optim.SGD(plain.parameters(), lr=0.1), progress=False)
    assert (plain[0].running_mean - clean.mean(0)).abs().max() > 1.0   # without it: the training batches' running average


def test_bn_loader_leaves_a_network_without_batchnorm_unchanged():
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    histories = []
    for bn_loader in (None, [x]):
        torch.manual_seed(1)
        model = nn.Linear(4, 2)
        histories.append(fit(model, data, 2, torch.optim.SGD(model.parameters(), lr=0.1), val_loader=data,
                             progress=False, bn_loader=bn_loader))
    assert histories[0] == histories[1]


def test_equal_batch_size_cuts_into_the_fewest_near_equal_batches():
    from fer_utils.train import equal_batch_size
    for n, most, expected in ((525, 512, 263), (512, 512, 512), (1025, 512, 342), (10, 512, 10), (0, 512, 1)):
        assert equal_batch_size(n, most) == expected, n
    sizes = [len(b) for b in torch.arange(1025).split(equal_batch_size(1025))]
    assert max(sizes) - min(sizes) <= 2 and max(sizes) <= 512
