"""Every metric against hand-computed values or scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from fer_utils import metrics as M


def test_accuracy_by_hand_and_from_scores():
    assert M.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert M.accuracy([0, 1, 1], scores) == pytest.approx(2 / 3)


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
    assert M.accuracy(y, p) == pytest.approx(accuracy_score(y, p))
    assert M.macro_f1(y, p, 7) == pytest.approx(f1_score(y, p, average="macro"))
    assert M.per_class_recall(y, p, 7) == pytest.approx(recall_score(y, p, average=None))


def test_macro_f1_by_hand():
    # class 0: P=1/2, R=1 -> F1=2/3; class 1: P=1, R=1/2 -> F1=2/3
    assert M.macro_f1([0, 1, 1], [0, 0, 1], 2) == pytest.approx(2 / 3)


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


def test_ccc_matches_pcc_times_scale_term():
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    p = 0.5 * y + rng.normal(scale=0.3, size=500) + 0.2
    rho, sy, sp = M.pcc(y, p), y.std(), p.std()
    expected = 2 * rho * sy * sp / (sy**2 + sp**2 + (y.mean() - p.mean()) ** 2)
    assert M.ccc(y, p) == pytest.approx(expected)


def test_va_metrics_keys():
    out = M.va_metrics([0.1, -0.2], [0.1, -0.2], [0.3, 0.4], [0.3, 0.5])
    assert set(out) == {f"{d}_{m}" for d in ("valence", "arousal") for m in ("rmse", "pcc", "ccc", "sagr")}
    assert out["valence_ccc"] == pytest.approx(1.0)


def test_abaw_scores_by_hand():
    assert M.abaw_va_score([1, 2, 3], [1, 2, 3], [1, 2, 3], [3, 5, 7]) == pytest.approx(
        0.5 * (1 + (8 / 3) / (2 / 3 + 8 / 3 + 9)))
    y, p = [0, 1, 1], [0, 0, 1]
    assert M.abaw_expr_score(y, p, num_classes=2) == pytest.approx(0.67 * (2 / 3) + 0.33 * (2 / 3))
    t = np.array([[1, 0], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.1, 0.7], [0.2, 0.6]])
    # AU0: TP1 FN1 -> F1 = 2/3; AU1: TP1 FP1 -> F1 = 2/3; accuracy 4/6
    assert M.au_f1(t, s) == pytest.approx(2 / 3)
    assert M.abaw_au_score(t, s) == pytest.approx(0.5 * 2 / 3 + 0.5 * 4 / 6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same length"):
        M.rmse([1, 2], [1])
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        M.au_f1([1, 0], [1, 0])
