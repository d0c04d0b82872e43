"""PyTorch checkpoints -> a Triton model repository, as an incremental doit build. The layout is the design:

    engine/        runs any step: Step declarations -> doit tasks (step.py), the runner (atomic writes,
                   records, reuse), recipes and the artifact cache, code/tool dependencies derived from
                   the code (codedeps.py), isolated child builds, errors, locks
    declarations/  what to build: the manifest schema, validated-manifest cache, paths and names
                   (layout.py, the only module that knows them), the artifact kinds (kinds.py)
    families/      what a model family is: YOLO11 detection, MobileCLIP2 — loading, graph I/O, tolerances
    tooling/       shared tools: ONNX export/validation/precision (onnx_tools.py), the EfficientNMS reference
    builders/      one module per artifact kind; a builder never imports another builder
    commands.py    doit commands: status, graph, builtins, recipe, clean-downloads
"""
