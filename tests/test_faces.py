"""Detection (Haar, MTCNN port) against the reference numbers, alignment, part crops."""
import math

import cv2
import numpy as np
import pytest

from fer_utils import faces
from fer_utils.assets import load_photo
from fer_utils.faces import Face, FaceNotFound

# reference/assets.md section 4 (facenet-pytorch 2.6.0 and OpenCV 4.14 on the same files)
REF_MTCNN = {
    "grace_hopper.jpg": ([174, 120, 356, 340], 0.9998,
                         [[222, 192], [310, 186], [269, 239], [233, 280], [307, 276]]),
    "astronaut.png": ([181, 62, 268, 172], 1.0000,
                      [[205, 102], [247, 104], [225, 129], [202, 139], [245, 142]]),
}
REF_HAAR = {"grace_hopper.jpg": [155, 105, 222, 222], "astronaut.png": [177, 66, 95, 95]}  # x, y, w, h
BOX_TOL, POINT_TOL = 1.5, 1.0  # px; the reference is rounded to integers


@pytest.mark.parametrize("name", sorted(REF_MTCNN))
def test_mtcnn_matches_reference(name):
    found = faces.detect(load_photo(name), "mtcnn")
    assert len(found) == 1
    box, prob, points = REF_MTCNN[name]
    np.testing.assert_allclose(found[0].box, box, atol=BOX_TOL)
    assert found[0].score == pytest.approx(prob, abs=1e-3)
    np.testing.assert_allclose(found[0].landmarks5, points, atol=POINT_TOL)


@pytest.mark.parametrize("name", sorted(REF_HAAR))
def test_haar_matches_reference(name):
    found = faces.detect(load_photo(name), "haar")
    assert len(found) == 1 and found[0].landmarks5 is None
    np.testing.assert_allclose(found[0].box, faces.xywh_to_xyxy(REF_HAAR[name]), atol=0)


def test_haar_eyes_and_smile_inside_face():
    grace, astro = load_photo("grace_hopper.jpg"), load_photo("astronaut.png")
    g_box, a_box = faces.detect_haar(grace)[0].box, faces.detect_haar(astro)[0].box
    assert len(faces.detect_eyes(grace, g_box)) == 1  # the glasses hide one eye (reference: 1)
    eyes = faces.detect_eyes(astro, a_box)
    assert len(eyes) == 2 and eyes[0][0] < eyes[1][0]
    assert len(faces.detect_smile(grace, g_box)) == 1 and len(faces.detect_smile(astro, a_box)) == 0
    for x0, y0, x1, y1 in eyes:
        assert a_box[0] <= x0 < x1 <= a_box[2] and a_box[1] <= y0 < y1 <= a_box[3]


@pytest.mark.parametrize("method", ["haar", "mtcnn"])
def test_face_not_found_names_the_image(method):
    grey = np.full((120, 160, 3), 128, np.uint8)
    assert faces.detect(grey, method) == []
    with pytest.raises(FaceNotFound, match="flat_grey.png"):
        faces.detect_one(grey, name="flat_grey.png", method=method)


def test_several_faces_sorted_largest_first():
    small = Face((0, 0, 10, 10), 0.99)
    big = Face((0, 0, 30, 20), 0.5)
    assert faces.sort_faces([small, big]) == [big, small]
    # two copies of the astronaut side by side, one shrunk: the larger is returned
    astro = load_photo("astronaut.png")
    canvas = np.full((512, 768, 3), 255, np.uint8)
    canvas[:, :512] = astro
    canvas[128:384, 512:] = cv2.resize(astro, (256, 256))
    found = faces.detect(canvas, "mtcnn")
    assert len(found) == 2 and found[0].area > 3 * found[1].area
    assert faces.detect_one(canvas, "pair").box == found[0].box


def test_nms_min_drops_nested_box():
    import torch

    from fer_utils.models.mtcnn import nms_min

    boxes = torch.tensor([[0.0, 0, 100, 100], [10, 10, 40, 40], [200, 200, 250, 250]])
    keep = nms_min(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.7)
    assert keep.tolist() == [0, 2]  # the nested box has IoU 0.1 but intersection/min = 1


def _similarity(scale, angle_deg, tx, ty):
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


def test_similarity_matrix_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    m = _similarity(1.7, 23.0, 12.0, -5.0)
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(faces.similarity_matrix(src, dst), m, atol=1e-9)


def test_align_undoes_a_known_warp():
    """Warp a patterned 112x112 'face' whose points sit on the template, then align it back."""
    rng = np.random.default_rng(1)
    pattern = cv2.resize(rng.integers(0, 255, (14, 14, 3), dtype=np.uint8), (112, 112),
                         interpolation=cv2.INTER_CUBIC)
    m = _similarity(2.2, -15.0, 140.0, 60.0)   # template frame -> photo frame
    photo = cv2.warpAffine(pattern, m, (400, 400), flags=cv2.INTER_CUBIC)
    points = faces.ARCFACE_TEMPLATE_112 @ m[:, :2].T + m[:, 2]
    aligned = faces.align(photo, points, size=112)
    diff = np.abs(aligned[10:-10, 10:-10].astype(float) - pattern[10:-10, 10:-10])
    assert diff.mean() < 6
    gray = faces.align_gray(photo, points, size=48)
    assert gray.shape == (48, 48) and gray.dtype == np.uint8
    np.testing.assert_allclose(faces.template(56), faces.ARCFACE_TEMPLATE_112 / 2)


def test_aligned_real_face_puts_eyes_on_template():
    grace = load_photo("grace_hopper.jpg")
    face = faces.detect_one(grace, "grace_hopper.jpg")
    m = faces.similarity_matrix(face.landmarks5, faces.template(112))
    moved = face.landmarks5 @ m[:, :2].T + m[:, 2]
    assert np.abs(moved[:2] - faces.ARCFACE_TEMPLATE_112[:2]).max() < 4  # px, 5-point fit residual
    assert faces.align(grace, face.landmarks5).shape == (112, 112, 3)


def test_part_crops_from_5_and_68_points():
    astro = load_photo("astronaut.png")
    points = np.array(REF_MTCNN["astronaut.png"][2], float)
    crops = faces.part_crops(astro, points, size=24)
    assert set(crops) == {"eyes", "nose", "mouth"}
    assert all(c.shape == (24, 24, 3) for c in crops.values())
    # 68 points whose eye / nose / mouth entries reproduce the same 5 points give the same crops
    lm68 = np.zeros((68, 2))
    lm68[36:42], lm68[42:48], lm68[30], lm68[48], lm68[54] = points[0], points[1], points[2], points[3], points[4]
    np.testing.assert_allclose(faces.landmarks68_to_5(lm68), points)
    crops68 = faces.part_crops(astro, lm68, size=24)
    assert all(np.array_equal(crops[k], crops68[k]) for k in crops)
    # the mouth crop of the smiling astronaut shows bright teeth in its middle
    gray = cv2.cvtColor(faces.part_crops(astro, points, size=48)["mouth"], cv2.COLOR_RGB2GRAY)
    assert gray[20:30, 14:34].max() > 200


def test_evaluate_detectors_on_a_tiny_photo_set():
    astro = load_photo("astronaut.png")
    item = {"image": astro, "points5": np.array(REF_MTCNN["astronaut.png"][2], float)}
    grey = {"image": np.full((112, 112, 3), 128, np.uint8), "points5": item["points5"] / 4}
    report = faces.evaluate_detectors([item, grey], n=2)
    assert report["haar_detection_rate"] == 0.5 and report["mtcnn_detection_rate"] == 0.5
    assert report["mtcnn_nme_mean"] < 0.02


def test_detectors_on_synthfaces():
    """Cartoon faces: MTCNN (trained on photos) still finds most of them; loose, honest bounds."""
    from fer_utils.data.synthetic import SynthFaces

    report = faces.evaluate_detectors(SynthFaces(12, seed=0, difficulty="lab"), n=12)
    assert report["n"] == 12
    assert report["mtcnn_detection_rate"] >= 0.75
    assert report["mtcnn_nme_mean"] < 0.15  # measured 0.07 on 60 lab faces
    assert 0.0 <= report["haar_detection_rate"] <= 1.0


def test_mtcnn_stages_shrink_and_end_in_detect():
    """The intermediate stages: fewer boxes at each stage, and the last one is what detect returns."""
    grace = load_photo("grace_hopper.jpg")
    out = faces.mtcnn_stages(grace)
    assert set(out) == {"candidates", "survivors", "boxes", "points"}
    assert out["candidates"].shape[1] == out["survivors"].shape[1] == out["boxes"].shape[1] == 5
    assert len(out["candidates"]) > len(out["survivors"]) > len(out["boxes"]) == 1
    assert out["points"].shape == (1, 5, 2)
    found = faces.detect(grace, "mtcnn")
    np.testing.assert_allclose(out["boxes"][0, :4], found[0].box, atol=1e-6)
    np.testing.assert_allclose(out["points"][0], found[0].landmarks5, atol=1e-6)
    assert (out["survivors"][:, 4] > 0.7).all() and (out["boxes"][:, 4] > 0.7).all()  # the default thresholds


@pytest.mark.parametrize("method", ["haar", "mtcnn"])
def test_detect_near_finds_the_face_around_its_box_in_image_coordinates(method):
    image = load_photo("grace_hopper.jpg")
    full = faces.detect(image, method)[0]
    x0, y0, x1, y1 = full.box
    shifted = (x0 + 12, y0 - 8, x1 + 12, y1 - 8)            # the previous frame's box, a little off
    near = faces.detect_near(image, [shifted], method)
    assert len(near) == 1 and faces.iou(near[0].box, full.box) > 0.8
    if method == "mtcnn":                                  # landmarks moved back into image coordinates too
        np.testing.assert_allclose(near[0].landmarks5, full.landmarks5, atol=6.0)


def test_detect_near_skips_faces_far_from_the_boxes_and_outside_the_size_range():
    image = load_photo("grace_hopper.jpg")                 # 512 x 600, one face of about 220 px
    h, w = image.shape[:2]
    assert faces.detect_near(image, [(0, h - 40, 40, h)], "haar") == []          # far away and too small
    x0, y0, x1, y1 = faces.detect(image, "haar")[0].box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    assert faces.detect_near(image, [(cx - 20, cy - 20, cx + 20, cy + 20)], "haar") == []   # face > 2x the box
    assert faces.detect_near(image, [], "haar") == []
    with pytest.raises(ValueError, match="haar' or 'mtcnn"):
        faces.detect_near(image, [(x0, y0, x1, y1)], "dlib")


def test_iou_of_boxes():
    assert faces.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert faces.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert faces.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0 and faces.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
