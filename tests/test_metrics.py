"""Every metric against values computed by hand on a few numbers written out in the test."""
import numpy as np
import pytest
import torch

from fer_utils import metrics as M


def test_accuracy_by_hand_and_from_scores():
    assert M.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert M.accuracy([0, 1, 1], scores) == pytest.approx(2 / 3)


def test_macro_f1_by_hand():
    # class 0: P=1/2, R=1 -> F1=2/3; class 1: P=1, R=1/2 -> F1=2/3
    assert M.macro_f1([0, 1, 1], [0, 0, 1], 2) == pytest.approx(2 / 3)
    # Unequal classes, so that macro, micro (= accuracy 4/6) and support-weighted F1 all differ.
    # F1_c = 2 TP / (2 TP + FP + FN):
    #   class 0: TP 2, FP 0, FN 1 -> 4/5;  class 1: TP 1, FP 1, FN 1 -> 1/2;  class 2: TP 1, FP 1, FN 0 -> 2/3
    #   macro = (4/5 + 1/2 + 2/3) / 3 = 59/90 (micro would be 2/3, weighted (3*4/5 + 2/2 + 2/3)/6 = 61/90)
    y, p = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    assert M.macro_f1(y, p) == pytest.approx(59 / 90)
    assert M.macro_f1(y, p, num_classes=3) == pytest.approx(59 / 90)
    # num_classes=4: class 3 has no sample and no prediction, scores 0 and still counts: 59/90 * 3/4
    assert M.macro_f1(y, p, num_classes=4) == pytest.approx(59 / 120)
    # (N, C) scores are argmaxed first
    assert M.macro_f1(y, np.eye(3)[p] * 0.8 + 0.1, 3) == pytest.approx(59 / 90)
    # renaming the classes (0->2, 1->0, 2->1) in both arrays and shuffling the samples changes nothing
    rename, order = np.array([2, 0, 1]), [5, 2, 0, 4, 1, 3]
    assert M.macro_f1(rename[y][order], rename[p][order], 3) == pytest.approx(59 / 90)


def test_confusion_matrix_and_recall_of_absent_class():
    cm = M.confusion_matrix([0, 0, 1], [0, 1, 1], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert M.confusion_matrix([0, 0, 1], [0, 1, 1], 3, normalize=True)[0].tolist() == [0.5, 0.5, 0.0]
    recall = M.per_class_recall([0, 0, 1], [0, 1, 1], 3)
    assert recall[0] == 0.5 and recall[1] == 1.0 and np.isnan(recall[2])


def test_regression_metrics_by_hand():
    y, p = [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]
    assert M.rmse(y, p) == pytest.approx(np.sqrt(2 / 3))
    assert M.pcc([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pcc(y, p) == 0.0  # constant prediction
    # CCC of p = 2y + 1: cov = 2 var_y = 4/3, var_p = 8/3, (mu_y - mu_p)^2 = 9 -> 2*(4/3)/(2/3+8/3+9)
    assert M.ccc([1, 2, 3], [3, 5, 7]) == pytest.approx((8 / 3) / (2 / 3 + 8 / 3 + 9))
    assert M.ccc(y, y) == pytest.approx(1.0)
    assert M.sagr([-1, 0.5, 0.0, 2], [-0.2, -0.1, 0.3, 1]) == 0.75


def test_pcc_by_hand():
    # y - mu_y = (-1, 0, 1), p - mu_p = (-1, 1, 0): sum of products 1, sums of squares 2 and 2 -> 1 / sqrt(4)
    assert M.pcc([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert M.pcc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # any positive scale and shift of p leaves rho alone; a negative scale flips its sign
    assert M.pcc([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert M.pcc([1, 2, 3], [-1, -5, -3]) == pytest.approx(-0.5)


def test_ccc_on_tensors_by_hand_and_differentiable():
    """The tensor path (the CCC loss) gives the same number as the by-hand one: population variances."""
    y = torch.tensor([1.0, 2.0, 3.0])
    p = torch.tensor([3.0, 5.0, 7.0], requires_grad=True)
    value = M.ccc(y, p)
    assert isinstance(value, torch.Tensor) and value.ndim == 0
    assert float(value.detach()) == pytest.approx(8 / 37, rel=1e-6)  # (8/3) / (37/3), as above
    value.backward()
    # the bias mu_p - mu_y = 4 > 0: lowering every prediction raises CCC, so the gradient sum is negative
    assert float(p.grad.sum()) < 0


def test_ccc_matches_pcc_times_scale_term():
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    p = 0.5 * y + rng.normal(scale=0.3, size=500) + 0.2
    rho, sy, sp = M.pcc(y, p), y.std(), p.std()
    expected = 2 * rho * sy * sp / (sy**2 + sp**2 + (y.mean() - p.mean()) ** 2)
    assert M.ccc(y, p) == pytest.approx(expected)


def test_va_metrics_by_hand():
    # valence perfect: RMSE 0, PCC 1, CCC 1, SAGR 1.
    # arousal y = (0.5, 0, -0.5), p = (0.5, -0.5, -0.5):
    #   RMSE = sqrt(0.25 / 3);  y - mu_y = (1/2, 0, -1/2), p - mu_p = (2/3, -1/3, -1/3) (mu_p = -1/6)
    #   PCC = (1/3 + 1/6) / sqrt(1/2 * 2/3) = sqrt(3)/2
    #   CCC = 2 (1/6) / (1/6 + 2/9 + 1/36) = 4/5;  SAGR: sign(0) = +1 vs sign(-0.5) -> 2/3
    out = M.va_metrics([0.1, -0.2], [0.1, -0.2], [0.5, 0.0, -0.5], [0.5, -0.5, -0.5])
    assert set(out) == {f"{d}_{m}" for d in ("valence", "arousal") for m in ("rmse", "pcc", "ccc", "sagr")}
    assert [out[f"valence_{m}"] for m in ("rmse", "pcc", "ccc", "sagr")] == pytest.approx([0, 1, 1, 1])
    assert [out[f"arousal_{m}"] for m in ("rmse", "pcc", "ccc", "sagr")] == pytest.approx(
        [np.sqrt(1 / 12), np.sqrt(3) / 2, 4 / 5, 2 / 3])


def test_abaw_scores_by_hand():
    assert M.abaw_va_score([1, 2, 3], [1, 2, 3], [1, 2, 3], [3, 5, 7]) == pytest.approx(
        0.5 * (1 + (8 / 3) / (2 / 3 + 8 / 3 + 9)))
    # EXPR on test_macro_f1_by_hand's example: F1 = 59/90 over 3 classes, accuracy 4/6 (they differ, so the
    # two weights cannot be swapped unnoticed); the default num_classes=7 adds 4 classes scoring 0.
    y, p = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    assert M.abaw_expr_score(y, p, num_classes=3) == pytest.approx(0.67 * 59 / 90 + 0.33 * 4 / 6)
    assert M.abaw_expr_score(y, p) == pytest.approx(0.67 * 59 / 210 + 0.33 * 4 / 6)
    # AU: 4 frames x 3 AUs; scores thresholded at 0.5 (0.5 itself is "present", 0.49 is not) give
    #   p = [[1,0,0], [0,1,0], [1,0,0], [1,0,0]]
    # AU0: t (1,1,0,1) p (1,0,1,1): TP 2 FP 1 FN 1 -> 2/3; AU1: t (0,1,0,0) p (0,1,0,0) -> 1;
    # AU2: t (1,0,0,0) p (0,0,0,0): TP 0 -> 0.  F1_avg = (2/3 + 1 + 0)/3 = 5/9 (pooled F1 would be 6/9)
    # correct decisions: 2 + 4 + 3 = 9 of 12 -> Accuracy_total = 3/4
    t = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    s = np.array([[0.9, 0.1, 0.49], [0.2, 0.5, 0.0], [0.7, 0.3, 0.1], [0.6, 0.0, 0.2]])
    assert M.au_f1(t, s) == pytest.approx(5 / 9)
    assert M.abaw_au_score(t, s) == pytest.approx(0.5 * 5 / 9 + 0.5 * 3 / 4)
    # a lower threshold turns 0.49 (AU2, frame 0) into a hit: AU2's F1 becomes 1 and 10 of 12 are right
    assert M.au_f1(t, s, threshold=0.45) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert M.abaw_au_score(t, s, threshold=0.45) == pytest.approx(0.5 * 8 / 9 + 0.5 * 10 / 12)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same length"):
        M.rmse([1, 2], [1])
    # one prediction for four targets used to broadcast (3 of 4 "right": 0.75); no samples gave nan
    for y, p in (([0, 1, 1, 1], [1]), ([0, 1], [0, 1, 1]), ([], []), ([0, 1], np.zeros((3, 2)))):
        with pytest.raises(ValueError, match="same length"):
            M.accuracy(y, p)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        M.au_f1([1, 0], [1, 0])
