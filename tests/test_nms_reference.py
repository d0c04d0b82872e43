"""The NumPy reference of TensorRT's EfficientNMS_TRT (pipeline/tooling/efficient_nms.py), on its own: it is
what every End2End graph is checked against, so its shortcuts must make the plain greedy decisions.
(Against Ultralytics' own NMS on models that detect: test_end2end.py.)"""
from __future__ import annotations


def test_the_nms_reference_makes_the_plain_greedy_decisions():
    """The reference's shortcuts (only candidates that can enter NMS are sorted; a kept box is compared
    only with boxes still in play) change nothing: the plain definition, written out here, agrees on
    random cases with score ties, duplicate boxes and more than 4096 candidates."""
    import numpy as np

    from pipeline.tooling.efficient_nms import MAX_CANDIDATES, efficient_nms

    def plain(boxes, scores, thr, iou_thr, k, agnostic):
        cx, cy, w, h = boxes.T
        corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        cands = sorted(((-scores[a, c], a, c) for a, c in zip(*np.nonzero(scores >= np.float32(thr)))))
        kept = []
        for _, a, c in cands[:MAX_CANDIDATES]:
            def iou(b):
                x1, y1 = max(corners[a][0], corners[b][0]), max(corners[a][1], corners[b][1])
                x2, y2 = min(corners[a][2], corners[b][2]), min(corners[a][3], corners[b][3])
                inter = np.float32(max(x2 - x1, 0)) * np.float32(max(y2 - y1, 0))
                area = lambda i: np.float32(max(corners[i][2] - corners[i][0], 0)) * np.float32(  # noqa: E731
                    max(corners[i][3] - corners[i][1], 0))
                union = area(a) + area(b) - inter
                return inter / union if union > 0 else 0.0
            if iou_thr > 1 or all(iou(b) < iou_thr for b, kc in kept if agnostic or kc == c):
                kept.append((a, c))
                if len(kept) == k:
                    break
        return kept

    rng = np.random.default_rng(7)
    for case in range(13):
        n, c = int(rng.integers(20, 1500)), int(rng.integers(1, 6))
        if case == 12:  # nothing suppressed (IoU <= 1): only the 4096 best of 7500 come out, ties at the cut
            n, c = 2500, 3
        xy, wh = rng.uniform(0, 320, (n, 2)), rng.uniform(2, 120, (n, 2))
        boxes = np.concatenate([xy, wh], 1).astype(np.float32)
        if case % 3 == 0:
            boxes[::5] = boxes[0]  # duplicates
        scores = rng.uniform(0, 1, (n, c)).astype(np.float32)
        if case % 2 == 0:
            scores = np.round(scores, 2).astype(np.float32)  # ties
        thr, iou_thr, k, agnostic = (0.0, 0.25)[case % 2], float(rng.uniform(0.3, 0.8)), int(rng.integers(1, 60)), case % 4 == 1
        if case == 12:
            iou_thr, k = 1.5, 5000
        num, det_boxes, det_scores, det_classes = efficient_nms(
            boxes[None], scores[None], score_threshold=thr, iou_threshold=iou_thr, max_output_boxes=k,
            class_agnostic=int(agnostic))
        want, m = plain(boxes, scores, thr, iou_thr, k, agnostic), int(num[0, 0])
        assert m == len(want) and want, case
        assert det_classes[0, :m].tolist() == [int(cl) for _, cl in want], case
        assert np.array_equal(det_scores[0, :m], np.array([scores[a, cl] for a, cl in want], np.float32)), case
        cx, cy, w, h = boxes[[a for a, _ in want]].T
        assert np.array_equal(det_boxes[0, :m], np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)), case
