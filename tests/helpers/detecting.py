"""Checkpoints that really detect something, built offline (random weights detect nothing: NOTES.md).

One training-mode pass with BatchNorm momentum 1 gives the features a sane scale; a tempered box branch
keeps the box decoding as well-conditioned as a trained model's; a bias on the class
logits lifts a share of the (anchor, class) scores above the usual thresholds, spread unevenly so that
boxes overlap, classes compete and NMS has real work.
"""
from __future__ import annotations

from pathlib import Path


def make_detecting_checkpoint(path: Path, class_names: list[str], imgsz: int = 320, seed: int = 0,
                              logit_bias: float = 4.0, arch: str = "yolo11n") -> Path:
    """`arch`: any architecture of a registered detection family (yolo11n, yolov8n, yolo26n, yolov10n, ...);
    both branches of a two-branch head (YOLO26, YOLOv10) are made to detect. It detects on images like the
    ones it was normalised with (uniform noise), tens of boxes per image at conf 0.25."""
    import torch
    import yaml
    from ultralytics import YOLO

    from pipeline.declarations.families import for_architecture

    torch.manual_seed(seed)
    cfg, name = for_architecture(arch).architecture(arch, len(class_names))
    cfg_file = path.parent / name  # the scale letter is read from the file name
    cfg_file.write_text(yaml.safe_dump(cfg))
    yolo = YOLO(str(cfg_file), task="detect")
    model = yolo.model
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(seed)))
        head = model.model[-1]
        # Random box-branch logits are far larger than a trained head's: the DFL softmax becomes so
        # ill-conditioned that PyTorch FP32 and FP64 differ by 0.025 px. Tempered 10x, FP32 vs FP64
        # differ by 2e-3 px, as on a trained model (NOTES.md).
        box_branches = [*head.cv2, *(getattr(head, "one2one_cv2", None) or [])]
        cls_branches = [*head.cv3, *(getattr(head, "one2one_cv3", None) or [])]
        for branch in box_branches:
            branch[-1].weight *= 0.1
            branch[-1].bias *= 0.1
        # Same for the class branch (weights x0.3: FP32 vs FP64 scores differ by 2.6e-5, as on a trained
        # model); the bias then decides how much is detected.
        for branch in cls_branches:
            branch[-1].weight *= 0.3
            bias = branch[-1].bias
            bias += logit_bias + torch.linspace(-1.0, 1.0, bias.numel())
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.03
    model.eval()
    model.names = dict(enumerate(class_names))
    yolo.save(str(path))
    return path

