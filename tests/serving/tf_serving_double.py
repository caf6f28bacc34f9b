"""A TF Serving test double (a test fixture, not product code).

tensorflow_model_server cannot be installed on the test machines, so the client is tested
end to end against this process, which serves the newest version of an export the way
TF Serving does (TF1 session from the SavedModel loader, tensor names from the
signature_def, via serving/session.py) behind TF Serving's two APIs:

  REST (127.0.0.1)  POST /v1/models/NAME[/versions/V]:predict   columnar "inputs" JSON
                    GET  /v1/models/NAME[/versions/V]/metadata  signature_def as JSON
                    GET  /v1/models/NAME                        version status
  gRPC (127.0.0.1)  tensorflow.serving.PredictionService: Predict, GetModelMetadata

Faithful where the client depends on it: JSON numbers are converted to the signature's
dtypes, a signature with one output answers {"outputs": <value>} without its name,
bfloat16 cannot go through JSON, errors are {"error": msg} with HTTP 400/404, gRPC errors
use INVALID_ARGUMENT / NOT_FOUND, and messages may be up to 2 GiB.
Test-only extras: GET /double/stats (calls per signature), POST /double/reset.

    python tests/serving/tf_serving_double.py --model-dir EXPORT/stca --name stca \
        --ports-file PORTS.json
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
from serving import layout  # noqa: E402
from serving.session import SessionModel  # noqa: E402

PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                  r"(?P<verb>:predict|/metadata)?$")
MAX_MESSAGE = (1 << 31) - 1


class NotFound(Exception):
    pass


class Servable:
    """The loaded version plus call counters shared by both APIs."""

    def __init__(self, model_dir: str, name: str):
        import tensorflow as tf
        self.tf, self.name = tf, name
        self.version = layout.versions(model_dir)[-1]
        self.model = SessionModel(os.path.join(model_dir, str(self.version)))
        self.calls = collections.Counter()
        self.lock = threading.Lock()

    def check(self, name: str, version) -> None:
        if name != self.name or (version and int(version) != self.version):
            raise NotFound(f"Servable not found for request: Specific({name}, {version})"
                           if version else f"Servable not found for request: Latest({name})")

    def signature(self, sig_name: str):
        sig_name = sig_name or "serving_default"
        if sig_name not in self.model.signature_defs:
            raise ValueError(f"Serving signature name: \"{sig_name}\" not found in signature def")
        return sig_name, self.model.signature_defs[sig_name]

    def predict(self, sig_name: str, inputs: dict) -> dict:
        with self.lock:
            self.calls[sig_name] += 1
        return self.model.run(sig_name, inputs)


def _from_json(name: str, value, info, tf) -> np.ndarray:
    dtype = tf.dtypes.as_dtype(info.dtype)
    if dtype in (tf.bfloat16, tf.float16):
        raise ValueError(f"Conversion of JSON Value for input {name} to type: "
                         f"{dtype.name} is unimplemented")
    array = np.asarray(value)
    if dtype.is_integer and array.dtype.kind not in "iu":
        raise ValueError(f"JSON Value for input {name} is not of expected type: "
                         f"DT_{dtype.name.upper()}")
    return array.astype(dtype.as_numpy_dtype)


def _to_json(name: str, value: np.ndarray):
    if value.dtype.name in ("bfloat16", "float16"):
        raise ValueError(f"Failed to write JSON value for tensor type: {value.dtype.name}")
    return value.tolist()


def _signature_def_map(servable):
    from tensorflow_serving.apis import get_model_metadata_pb2
    out = get_model_metadata_pb2.SignatureDefMap()
    for k, v in servable.model.signature_defs.items():
        out.signature_def[k].CopyFrom(v)
    return out


def make_rest_handler(servable: Servable):
    from google.protobuf import json_format

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet test logs
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/double/stats":
                return self._send(200, {"calls": dict(servable.calls)})
            match = PATH.match(self.path)
            try:
                if not match or match["verb"] == ":predict":
                    raise NotFound(f"Malformed request: GET {self.path}")
                servable.check(match["name"], match["version"])
                if match["verb"] == "/metadata":
                    meta = json_format.MessageToDict(_signature_def_map(servable),
                                                     preserving_proto_field_name=True)
                    meta["@type"] = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
                    return self._send(200, {
                        "model_spec": {"name": servable.name, "signature_name": "",
                                       "version": str(servable.version)},
                        "metadata": {"signature_def": meta}})
                return self._send(200, {"model_version_status": [{
                    "version": str(servable.version), "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]})
            except NotFound as e:
                return self._send(404, {"error": str(e)})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if self.path == "/double/reset":
                servable.calls.clear()
                return self._send(200, {})
            match = PATH.match(self.path)
            try:
                if not match or match["verb"] != ":predict":
                    raise NotFound(f"Malformed request: POST {self.path}")
                servable.check(match["name"], match["version"])
                body = json.loads(raw)
                if "instances" in body:
                    raise ValueError("this double implements the columnar 'inputs' format only")
                if "inputs" not in body:
                    raise ValueError("Missing 'inputs' or 'instances' key")
                sig_name, sig = servable.signature(body.get("signature_name", ""))
                inputs = body["inputs"]
                for name in inputs:
                    if name not in sig.inputs:
                        raise ValueError(f"JSON object: does not have named input: {name}")
                arrays = {k: _from_json(k, v, sig.inputs[k], servable.tf)
                          for k, v in inputs.items()}
                out = servable.predict(sig_name, arrays)
                values = {k: _to_json(k, v) for k, v in out.items()}
                payload = values if len(values) > 1 else next(iter(values.values()))
                return self._send(200, {"outputs": payload})
            except NotFound as e:
                return self._send(404, {"error": str(e)})
            except Exception as e:  # noqa: BLE001  (TF Serving answers errors as JSON)
                return self._send(400, {"error": f"{type(e).__name__}: {e}"})

    return Handler


def make_grpc_servicer(servable: Servable):
    import grpc
    from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                         prediction_service_pb2_grpc)
    tf = servable.tf

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def _check(self, spec, context):
            try:
                servable.check(spec.name, spec.version.value if spec.HasField("version")
                               else None)
            except NotFound as e:
                context.abort(grpc.StatusCode.NOT_FOUND, str(e))

        def Predict(self, request, context):
            self._check(request.model_spec, context)
            try:
                sig_name, _ = servable.signature(request.model_spec.signature_name)
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                out = servable.predict(sig_name, inputs)
            except Exception as e:  # noqa: BLE001
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{type(e).__name__}: {e}")
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = sig_name
            for k, v in out.items():
                response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return response

        def GetModelMetadata(self, request, context):
            self._check(request.model_spec, context)
            if list(request.metadata_field) != ["signature_def"]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "Metadata field signature_def is the only one supported")
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(_signature_def_map(servable))
            return response

    return Servicer()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="TF Serving test double")
    parser.add_argument("--model-dir", required=True, help="EXPORT_BASE/<model_name>")
    parser.add_argument("--name", required=True)
    parser.add_argument("--ports-file", required=True)
    args = parser.parse_args(argv)
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    servable = Servable(args.model_dir, args.name)
    http = ThreadingHTTPServer(("127.0.0.1", 0), make_rest_handler(servable))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        make_grpc_servicer(servable), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"rest": http.server_address[1], "grpc": grpc_port,
                   "version": servable.version, "pid": os.getpid()}, f)
    os.replace(tmp, args.ports_file)  # the test polls for this file
    try:
        http.serve_forever()
    finally:
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
