"""STAND-IN for Triton's onnxruntime backend (a Python-based backend), for tests only.

Triton's real onnxruntime backend is not obtainable here. Placed at `backends/onnxruntime/model.py`,
this lets the pipeline's unchanged `platform: "onnxruntime_onnx"` folders load and run: the graph runs
in onnxruntime (CPU); a graph with an EfficientNMS_TRT node runs it through the project's NumPy
reference of the plugin (pipeline/tooling/efficient_nms.py, via onnxruntime-extensions).
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
        graph = onnx.load(path)
        if any(n.op_type == "EfficientNMS_TRT" for n in graph.graph.node):
            sys.path.insert(0, os.environ["PIPELINE_ROOT"])
            from pipeline.tooling.efficient_nms import cpu_session
            self.session = cpu_session(graph)
        else:
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
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
