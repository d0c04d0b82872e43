"""STAND-IN for Triton's onnxruntime backend (a Python-based backend), for tests only.

Triton's real onnxruntime backend is not obtainable here. Placed at `backends/onnxruntime/model.py`,
this lets the pipeline's unchanged `platform: "onnxruntime_onnx"` folders load and run in onnxruntime
(CPU). It is never more lenient than the real backend: it first creates a plain onnxruntime session of
the unchanged graph, as the real one does, and refuses whatever plain onnxruntime refuses — with one
exception, the real backend's own: a graph whose only missing piece is a CPU kernel for a TensorRT
plugin node (EfficientNMS_TRT) loads when config.pbtxt enables the TensorRT execution accelerator, the
provider that runs that node. Only then does the NumPy reference of the plugin stand in for TensorRT
(pipeline/tooling/efficient_nms.py, via onnxruntime-extensions).
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import onnx
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"],
                            config.get("default_model_filename") or "model.onnx")
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        try:
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # the real backend's first step fails the same way
            message = str(e)
            if not ("NOT_IMPLEMENTED" in message and "Could not find an implementation for EfficientNMS_TRT" in message):
                raise pb_utils.TritonModelException(f"onnxruntime refuses the graph: {message}")
            accelerators = (config.get("optimization", {}).get("execution_accelerators", {})
                            .get("gpu_execution_accelerator", []))
            if not any(a.get("name") == "tensorrt" for a in accelerators):
                raise pb_utils.TritonModelException(
                    "EfficientNMS_TRT has no kernel but onnxruntime's TensorRT execution provider, and config.pbtxt "
                    "enables no 'tensorrt' gpu_execution_accelerator")
            sys.path.insert(0, os.environ["PIPELINE_ROOT"])
            from pipeline.tooling.efficient_nms import cpu_session
            self.session = cpu_session(onnx.load(path))  # stands in for the TensorRT provider's plugin
        self.batch_sizes = []

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            self.batch_sizes.append(int(next(iter(feeds.values())).shape[0]))
            outs = self.session.run(self.outputs, feeds)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.outputs, outs)]))
        return responses
