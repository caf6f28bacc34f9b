"""Three ways to call the exported signatures with the same dicts of numpy arrays.

    RestTransport       TF Serving REST API (urllib; no extra dependency)
    GrpcTransport       TF Serving gRPC PredictionService (grpcio + tensorflow-serving-api)
    InProcessTransport  a SavedModel loaded in this process (offline scoring, demos, benches)

Each has `predict(signature_name, inputs) -> outputs` and `contract()`, the signatures'
names / dtypes / shapes as the server reports them (TF Serving's model metadata API), in
the format of `serving.signatures.contract`. Server-side failures raise `ServingError`.

Example:
    transport = GrpcTransport("localhost:8500", "stca")
    scores = transport.predict("serving_default", inputs)["score_click"]
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Mapping

import numpy as np

from serving import layout
from serving import requests as req
from serving import signatures as sigs

# TF Serving accepts messages up to 2 GiB; a 10k-event user cache is ~8 MB (d=64, N=3),
# above gRPC's 4 MB default, so the client raises its limits too.
GRPC_MAX_MESSAGE = (1 << 31) - 1


class ServingError(RuntimeError):
    """The server (or the loaded model) rejected or failed a call; the message is its own."""


class RestTransport:
    """TF Serving's REST API: POST /v1/models/NAME[/versions/V]:predict, columnar JSON.

    Args:
      base_url: e.g. "http://localhost:8501".
      model_name: the served model's name (export.model_name).
      version: pin a version; None lets the server pick its newest.
      timeout_s: per-call timeout (serving.timeout_s).
    """

    def __init__(self, base_url: str, model_name: str, version: int | None = None,
                 timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.model_name, self.version, self.timeout_s = model_name, version, timeout_s
        self._contract = None

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except ValueError:
                message = text
            raise ServingError(f"REST {e.code} from {path}: {message}") from None
        except urllib.error.URLError as e:
            raise ServingError(f"REST call to {self.base_url}{path} failed: {e.reason}") from None

    def contract(self) -> dict:
        if self._contract is None:
            from google.protobuf import json_format
            from tensorflow_serving.apis import get_model_metadata_pb2
            path = req.rest_path(self.model_name, self.version).replace(":predict", "/metadata")
            meta = dict(self._call(path)["metadata"]["signature_def"])
            meta.pop("@type", None)
            defs = json_format.ParseDict(meta, get_model_metadata_pb2.SignatureDefMap(),
                                         ignore_unknown_fields=True)
            self._contract = sigs.contract_of(defs.signature_def)
        return self._contract

    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
        body = req.rest_body(signature_name, inputs)
        try:
            out = self._call(req.rest_path(self.model_name, self.version), body)
        except ServingError as e:
            if "bfloat16" in str(e):
                raise ServingError(f"{e} (a bfloat16 user cache cannot travel over TF "
                                   "Serving's REST JSON; use GrpcTransport or export with "
                                   "export.cache_dtype=float32)") from None
            raise
        try:
            return req.parse_rest_response(out, self.contract()[signature_name]["outputs"])
        except RuntimeError as e:
            raise ServingError(str(e)) from None

    def close(self) -> None:
        pass


class GrpcTransport:
    """TF Serving's gRPC PredictionService (Predict, GetModelMetadata).

    Args:
      target: "host:port", e.g. "localhost:8500".
      model_name, version, timeout_s: as for RestTransport.
    """

    def __init__(self, target: str, model_name: str, version: int | None = None,
                 timeout_s: float = 10.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc
        self.model_name, self.version, self.timeout_s = model_name, version, timeout_s
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._contract = None

    def _rpc(self, method, request):
        import grpc
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise ServingError(f"gRPC {e.code().name}: {e.details()}") from None

    def contract(self) -> dict:
        if self._contract is None:
            from tensorflow_serving.apis import get_model_metadata_pb2
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            request.model_spec.name = self.model_name
            if self.version:
                request.model_spec.version.value = int(self.version)
            response = self._rpc(self._stub.GetModelMetadata, request)
            defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(defs)
            self._contract = sigs.contract_of(defs.signature_def)
        return self._contract

    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
        request = req.grpc_request(self.model_name, signature_name, inputs, self.version)
        return req.parse_grpc_response(self._rpc(self._stub.Predict, request))

    def close(self) -> None:
        self._channel.close()


class InProcessTransport:
    """The exported SavedModel loaded here with tf.saved_model.load (same request dicts).

    Args:
      export_dir: a version dir, a model dir (newest version) or an export base.
    """

    def __init__(self, export_dir: str):
        import tensorflow as tf
        from tensorflow.python.saved_model import loader_impl
        self.version_dir = layout.resolve_version_dir(export_dir)
        self._tf = tf
        self._loaded = tf.saved_model.load(self.version_dir)
        saved = loader_impl.parse_saved_model(self.version_dir)
        self._contract = sigs.contract_of(saved.meta_graphs[0].signature_def)

    def contract(self) -> dict:
        return self._contract

    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
        tf = self._tf
        try:
            fn = self._loaded.signatures[signature_name]
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except (KeyError, TypeError, ValueError, tf.errors.OpError) as e:
            raise ServingError(f"{signature_name}: {e}") from None
        return {k: v.numpy() for k, v in out.items()}

    def close(self) -> None:
        pass
