"""PyTorch checkpoints -> a Triton model repository, as an incremental doit build. The layout is the design:

    engine/        runs any step and knows no family, format or artifact path: Step -> doit task, the
                   runner (atomic writes, records, reuse, cache), code/tool dependencies derived from the
                   code, the no-op replay, locks, publication of staged folders
    tooling/       shared tools: ONNX export/validation/precision, the EfficientNMS reference, DALI
                   preprocessing, safe checkpoint loading, TensorRT targets and progress
    families/      one module per model family: its declaration and how its models load, export, check
    builders/      one module per artifact kind; handed its family by its step, never imports one (nor
                   another builder)
    declarations/  what to build: the family and format registries, the steps, paths (layout.py), the
                   manifest, and the DAG made of them (dag.py)
    commands/      doit commands: status, graph, builtins, recipe, clean-downloads, compare-tracks
"""
