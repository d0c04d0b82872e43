"""config.pbtxt through Triton's own ModelConfig protobuf, from the artifact's real I/O.

The I/O (names, dtypes, dims without the batch dim) is read from the model file itself, so the config
cannot drift from the graph. The text is parsed back into a ModelConfig before it is published.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..tooling.onnx_tools import graph_io

if TYPE_CHECKING:
    from ..engine.context import StepContext

PREFERRED = (8, 16, 32, 64)  # the documented preferred batch sizes, capped at max_batch
TRITON_DTYPE = {"FLOAT": "FP32", "FLOAT16": "FP16", "DOUBLE": "FP64", "INT32": "INT32", "INT64": "INT64",
                "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "BFLOAT16": "BF16", "INT16": "INT16"}


def triton_io(values) -> list[tuple[str, str, list[int]]]:
    return [(name, "TYPE_" + TRITON_DTYPE[dtype], dims) for name, dtype, dims in values]


def build_config(name: str, platform: str, inputs, outputs, *, max_batch: int, dynamic_batching: dict,
                 instance_group: dict, untrained: bool, tensorrt_accelerator: dict | None = None,
                 cc_model_filenames: dict[str, str] | None = None):
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = mc.ModelConfig(name=name, platform=platform, max_batch_size=max_batch)
    for io_name, dtype, dims in inputs:
        cfg.input.add(name=io_name, data_type=mc.DataType.Value(dtype), dims=dims)
    for io_name, dtype, dims in outputs:
        cfg.output.add(name=io_name, data_type=mc.DataType.Value(dtype), dims=dims)
    sizes = dynamic_batching["preferred_batch_sizes"] or [s for s in PREFERRED if s <= max_batch] or [max_batch]
    cfg.dynamic_batching.preferred_batch_size.extend(sizes)
    cfg.dynamic_batching.max_queue_delay_microseconds = dynamic_batching["max_queue_delay_us"]
    cfg.instance_group.add(count=instance_group["count"],
                           kind=mc.ModelInstanceGroup.Kind.Value(f"KIND_{instance_group['kind'].upper()}"))
    if tensorrt_accelerator is not None:
        # onnxruntime's TensorRT execution provider: the only one that runs a TensorRT plugin node.
        accelerator = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        for key, value in tensorrt_accelerator.items():
            accelerator.parameters[key] = value
    if cc_model_filenames:
        # One plan per GPU architecture: Triton's TensorRT backend loads the one named for the GPU's compute
        # capability. No default_model_filename: a GPU outside the targets fails to load, by name.
        for cc, filename in cc_model_filenames.items():
            cfg.cc_model_filenames[cc] = filename
    if untrained:
        # Random weights: say so where an operator looking at the repository will see it.
        cfg.parameters["untrained_random_weights"].string_value = "true"
    return cfg


def write_config(ctx: StepContext) -> dict:
    """Step builder: config.pbtxt of one Triton folder, from the I/O of the graph its model file is made of."""
    graph = ctx.input("graph")
    if graph.suffix != ".onnx":
        raise RuntimeError(f"no I/O reader for {graph}")
    inputs, outputs = (triton_io(v) for v in graph_io(graph))
    cfg = build_config(ctx.param("folder"), ctx.param("platform"), inputs, outputs, max_batch=ctx.param("max_batch"),
                       dynamic_batching=ctx.param("dynamic_batching"), instance_group=ctx.param("instance_group"),
                       untrained=ctx.param("untrained"), tensorrt_accelerator=ctx.param("tensorrt_accelerator"),
                       cc_model_filenames=ctx.param("cc_model_filenames"))
    _finish(ctx, cfg)
    return {"inputs": [list(i) for i in inputs], "outputs": [list(o) for o in outputs]}


def _finish(ctx: StepContext, cfg) -> str:
    """The manifest's `config_overrides` for this folder merged in, then the text Triton will read, parsed back."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from ..tooling import model_config

    model_config.merge(cfg, ctx.param("overrides"))
    text = text_format.MessageToString(cfg)
    if text_format.Parse(text, mc.ModelConfig()) != cfg:
        raise RuntimeError("config.pbtxt does not round-trip through ModelConfig")
    ctx.output().write_text(text)
    return text


def _dali_io(record_path) -> tuple[list, list]:
    """The DALI model's I/O, as its step recorded it: encoded images in (one byte array per image, any
    length: ragged across requests); out, in the pipeline's order, letterboxed images, the image sizes, and
    with an encoder branch the encoder's images."""
    import json

    v = json.loads(record_path.read_text())["verification"]
    return [(v["input"], "TYPE_UINT8", [-1])], [(name, "TYPE_" + dtype, dims) for name, dtype, dims in v["outputs"]]


def write_dali_config(ctx: StepContext) -> dict:
    """Step builder: config.pbtxt of a DALI preprocessing model (backend `dali`, `1/model.dali`).

    Inputs are matched to the pipeline's `external_source` names and outputs by position, as Triton's DALI
    backend does; the input allows ragged batches, so requests of different byte lengths batch together."""
    inputs, outputs = _dali_io(ctx.input("pipeline_record"))
    cfg = build_config(ctx.param("folder"), "", inputs, outputs, max_batch=ctx.param("max_batch"),
                       dynamic_batching=ctx.param("dynamic_batching"), instance_group=ctx.param("instance_group"),
                       untrained=False)
    cfg.ClearField("platform")
    cfg.backend = "dali"
    cfg.input[0].allow_ragged_batch = True
    # The one model parameter of Triton's DALI backend that tunes speed: it builds each instance's pipeline
    # with this many CPU threads (dali_backend docs/config.md "num_threads"; src/parameters.h GetNumThreads,
    # -1 when absent: the serialized value). The same as model.dali's, written where an operator sees it.
    cfg.parameters["num_threads"].string_value = str(ctx.param("num_threads"))
    _finish(ctx, cfg)
    return {"inputs": [list(i) for i in inputs], "outputs": [list(o) for o in outputs], "backend": "dali"}


def _by_name(ctx: StepContext, member: str, io: list):
    """A lookup of a member's tensors by name that says which member lacks which tensor (the ensemble wires
    them by name), rather than a KeyError."""
    table = {name: (dtype, dims) for name, dtype, dims in io}

    def get(name: str):
        if name not in table:
            raise RuntimeError(f"ensemble {ctx.param('folder')}: its {member} has no tensor {name!r} (it has "
                               f"{', '.join(table) or 'none'}), and the ensemble wires its members by tensor name: "
                               f"the member's artifact and this tool disagree on the name")
        return table[name]
    return get


def write_ensemble_config(ctx: StepContext) -> dict:
    """Step builder: config.pbtxt of a Track D ensemble (encoded images -> DALI -> End2End -> boxes in the
    original image's pixels) or Track E (the same, and the DALI encoder branch -> MobileCLIP2 image encoder
    -> image_embeddings). Triton refuses an ensemble whose connected tensors differ in dtype or shape:
    the chain is checked here from the members' own I/O first."""
    from tritonclient.grpc import model_config_pb2 as mc

    from ..tooling import dali_preprocess as D
    from ..tooling.efficient_nms import END2END_OUTPUTS

    images, image_size = D.OUTPUTS
    num_dets, det_boxes, det_scores, det_classes = END2END_OUTPUTS
    (dali_in,), dali_out = _dali_io(ctx.input("pipeline_record"))
    det_in, det_out = (triton_io(v) for v in graph_io(ctx.input("detector_graph")))
    box_in, box_out = (triton_io(v) for v in graph_io(ctx.input("boxes_graph")))
    boxes_in, boxes_size = (name for name, _, _ in box_in)  # the box mapping's (boxes, image size), in its order
    dali_out, det_out, box_in = (_by_name(ctx, member, io) for member, io in
                                 (("DALI model", dali_out), ("detector", det_out), ("postprocess", box_in)))
    names = ctx.param("members")
    links = [(f"DALI {images}", dali_out(images), "detector input", tuple(det_in[0][1:])),
             (f"detector {det_boxes}", det_out(det_boxes), f"postprocess {boxes_in}", box_in(boxes_in)),
             (f"DALI {image_size}", dali_out(image_size), f"postprocess {boxes_size}", box_in(boxes_size))]
    enc_in = enc_out = None
    if "encoder" in names:
        enc_in, enc_out = (triton_io(v) for v in graph_io(ctx.input("encoder_graph")))
        links.append((f"DALI {D.CLIP_OUTPUT}", dali_out(D.CLIP_OUTPUT), "encoder input", tuple(enc_in[0][1:])))
    for a, (adt, adims), b, (bdt, bdims) in links:
        if adt != bdt or list(adims) != list(bdims):
            raise RuntimeError(f"ensemble {ctx.param('folder')}: {a} is {adt} {list(adims)} but {b} is {bdt} "
                               f"{list(bdims)}: Triton would refuse the ensemble")
    cfg = mc.ModelConfig(name=ctx.param("folder"), platform="ensemble", max_batch_size=ctx.param("max_batch"))
    cfg.input.add(name=dali_in[0], data_type=mc.DataType.Value(dali_in[1]), dims=dali_in[2])
    outputs = [(num_dets, *det_out(num_dets)), (det_boxes, *box_out[0][1:]),
               (det_scores, *det_out(det_scores)), (det_classes, *det_out(det_classes))]
    if enc_out:
        outputs.append(("image_embeddings", *enc_out[0][1:]))
    for name, dtype, dims in outputs:
        cfg.output.add(name=name, data_type=mc.DataType.Value(dtype), dims=dims)
    steps = cfg.ensemble_scheduling
    pre = steps.step.add(model_name=names["preprocess"], model_version=-1)
    pre.input_map[dali_in[0]] = dali_in[0]
    pre.output_map[images] = "preprocessed_images"
    pre.output_map[image_size] = "image_size"
    det = steps.step.add(model_name=names["detector"], model_version=-1)
    det.input_map[det_in[0][0]] = "preprocessed_images"
    det.output_map[num_dets] = num_dets
    det.output_map[det_boxes] = "letterboxed_boxes"
    det.output_map[det_scores] = det_scores
    det.output_map[det_classes] = det_classes
    post = steps.step.add(model_name=names["postprocess"], model_version=-1)
    post.input_map[boxes_in] = "letterboxed_boxes"
    post.input_map[boxes_size] = "image_size"
    post.output_map[box_out[0][0]] = det_boxes
    if enc_out:  # one decode, two preprocessing branches: the encoder reads the DALI model's third output
        pre.output_map[D.CLIP_OUTPUT] = "clip_images"
        enc = steps.step.add(model_name=names["encoder"], model_version=-1)
        enc.input_map[enc_in[0][0]] = "clip_images"
        enc.output_map[enc_out[0][0]] = "image_embeddings"
    if ctx.param("untrained"):
        cfg.parameters["untrained_random_weights"].string_value = "true"
    _finish(ctx, cfg)
    ctx.output("marker").write_text(
        f"{ctx.param('folder')} is a Triton ensemble: its steps are in ../config.pbtxt "
        f"({', '.join(names.values())}). Triton needs this version folder; it holds no model file.\n")
    return {"members": names, "links": [[a, b] for a, _, b, _ in links],
            "outputs": [[n, d, list(s)] for n, d, s in outputs]}
