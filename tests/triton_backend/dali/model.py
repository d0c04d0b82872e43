"""STAND-IN for Triton's DALI backend (a Python-based backend), for tests only.

The served pipeline decodes with nvJPEG and resizes on the GPU; this machine has no GPU, and DALI
builds a pipeline when it deserializes it, so the served file cannot run here. The stand-in runs its
CPU twin instead, and only when the served file IS the pipeline definition, byte for byte: it
serializes pipeline/tooling/dali_preprocess.py's GPU pipeline from the definition recorded beside it
(`1/model.dali.verification.json`) and refuses to load if `1/model.dali` differs. It then applies the real backend's own checks (config inputs matched by name
to the pipeline's external_source names, outputs matched by position: same count, same dtypes) and
runs the same definition on DALI's CPU operators (DALI's CPU decoder equals PIL; nvJPEG differs from it
by up to 2 grey levels on smooth images, measured on an H200: README "Track D").
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

DTYPES = {"TYPE_FP16": np.float16, "TYPE_FP32": np.float32}


class TritonPythonModel:
    def initialize(self, args):
        sys.path.insert(0, os.environ["PIPELINE_ROOT"])
        from pipeline.tooling import dali_preprocess as D

        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"],
                            config.get("default_model_filename") or "model.dali")
        with open(path, "rb") as f:
            served = f.read()
        outputs = config["output"]
        with open(path + ".verification.json") as f:
            definition = json.load(f)["verification"]["definition"]
        self.max_batch = int(config["max_batch_size"])
        if D.pipeline(definition, "gpu").serialize() != served:
            raise pb_utils.TritonModelException(f"stand-in: {path} is not the pipeline definition {definition}")
        for i in config["input"]:  # the real backend: every config input must be a pipeline input
            if i["name"] != D.INPUT:
                raise pb_utils.TritonModelException(
                    f"Configuration file contains config for {i['name']} but such input is not present in the pipeline")
        if len(outputs) != len(D.outputs(definition)):  # the real backend: outputs by position, same count
            raise pb_utils.TritonModelException(
                f"The number of outputs specified in the DALI pipeline and the configuration file do not match. "
                f"Model config outputs: {len(outputs)}, pipeline outputs: {len(D.outputs(definition))}")
        for o, (name, dtype, dims) in zip(outputs, D.outputs(definition)):  # the real backend: same dtypes
            if o["data_type"] != f"TYPE_{dtype}" or len(o["dims"]) != len(dims):
                raise pb_utils.TritonModelException(f"output {o['name']}: config {o['data_type']} {o['dims']}, "
                                                    f"pipeline {dtype} {dims}")
        self.twin = D.pipeline(definition, "cpu", max_batch=self.max_batch)
        self.twin.build()
        self.input, self.names = D.INPUT, [o["name"] for o in outputs]
        self.dtypes = [DTYPES.get(o["data_type"]) for o in outputs]
        self.batches = []

    def _run(self, encoded):
        out = [[] for _ in self.names]
        for i in range(0, len(encoded), self.max_batch):
            chunk = list(encoded[i:i + self.max_batch])
            n = len(chunk)
            self.twin.feed_input(self.input, chunk)
            results = self.twin.run()
            for k, r in enumerate(results):
                out[k] += [np.array(r[j]) for j in range(n)]
        return [np.stack(o) for o in out]

    def execute(self, requests):
        encoded, counts = [], []
        for request in requests:  # requests of different byte lengths arrive together (ragged batch)
            arr = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy()
            encoded += [np.ascontiguousarray(row, dtype=np.uint8) for row in arr]
            counts.append(len(arr))
        self.batches.append(len(encoded))
        outs = self._run(encoded)
        for k, (o, want) in enumerate(zip(outs, self.dtypes)):
            if want is not None and o.dtype != want:  # the real backend: config dtypes are the pipeline's
                raise pb_utils.TritonModelException(f"output {self.names[k]} is {o.dtype}, config says {want}")
        responses, start = [], 0
        for n in counts:
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(o[start:start + n])) for name, o in zip(self.names, outs)]))
            start += n
        return responses
