"""Three ways to call the exported signatures with the same dicts of numpy arrays.

    RestTransport       TF Serving REST API (urllib; no extra dependency)
    GrpcTransport       TF Serving gRPC PredictionService (grpcio + tensorflow-serving-api)
    InProcessTransport  a SavedModel loaded in this process (offline scoring, demos, benches)

Each has `predict(signature_name, inputs) -> outputs` and `contract()`, the signatures'
names / dtypes / shapes as the server reports them (TF Serving's model metadata API), in
the format of `serving.signatures.contract`. Server-side failures, unreachable servers
and timeouts raise `ServingError`. Each call waits at most `timeout_s` seconds: the value
given to the transport, else serving.timeout_s of the RankingClient that uses it.

gRPC over TLS: `GrpcTransport.from_config(target, name, cfg.serving)` with
serving.grpc_tls=true (root certificates, optional client certificate and key for mutual
TLS, optional server name override; docs/serving.md).

Example:
    transport = GrpcTransport("localhost:8500", "stca")
    scores = transport.predict("serving_default", inputs)["score_click"]
    secure = GrpcTransport.from_config("ranker.internal:8500", "stca", cfg.serving)
"""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Mapping

import numpy as np

from core.config import ConfigError, ServingConfig
from serving import layout
from serving import requests as req
from serving import signatures as sigs

# TF Serving accepts messages up to 2 GiB; a 10k-event user cache is ~8 MB (d=64, N=3),
# above gRPC's 4 MB default, so the client raises its limits too.
GRPC_MAX_MESSAGE = (1 << 31) - 1


class ServingError(RuntimeError):
    """The server (or the loaded model) rejected or failed a call; the message is its own."""


def _timeout(timeout_s: float | None) -> float | None:
    """A per-call timeout in seconds (checked as serving.timeout_s is), or None: set later
    by the RankingClient using the transport."""
    if timeout_s is not None:
        ServingConfig(timeout_s=timeout_s).validate()
    return timeout_s


def _seconds(timeout_s: float | None) -> float:
    return ServingConfig.timeout_s if timeout_s is None else timeout_s


def _read_pem(path: str, field: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"serving.{field}: cannot read {path!r}: {e.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"serving.{field}: {path!r} is not a PEM file (no -----BEGIN line)")
    return data


def tls_credentials(root_certs: str = "", client_cert: str = "", client_key: str = ""):
    """grpc.ChannelCredentials for a TLS channel, from PEM files (serving.grpc_* fields).

    Args:
      root_certs: root CA certificates the server's certificate must chain to; "" = the
        roots bundled with gRPC.
      client_cert, client_key: the client's certificate chain and private key, for servers
        that require mutual TLS; both or neither.

    Returns:
      grpc.ChannelCredentials for `GrpcTransport(..., credentials=)`.

    Raises:
      ConfigError naming the field: unreadable or non-PEM file, cert without key.

    Example:
        creds = tls_credentials("ca.pem", "client.pem", "client.key")
    """
    import grpc  # lazy: the REST client needs neither grpc nor TensorFlow
    ServingConfig(grpc_tls=True, grpc_root_certs=root_certs, grpc_client_cert=client_cert,
                  grpc_client_key=client_key).validate()   # types, cert and key together
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(root_certs, "grpc_root_certs") if root_certs else None,
        private_key=_read_pem(client_key, "grpc_client_key") if client_key else None,
        certificate_chain=_read_pem(client_cert, "grpc_client_cert") if client_cert else None)


class RestTransport:
    """TF Serving's REST API: POST /v1/models/NAME[/versions/V]:predict, columnar JSON.

    Args:
      base_url: e.g. "http://localhost:8501".
      model_name: the served model's name (export.model_name).
      version: pin a version; None lets the server pick its newest.
      timeout_s: per-call timeout in seconds; None = serving.timeout_s of the RankingClient
        using this transport (ServingConfig's default, 10 s, when used alone).
    """

    def __init__(self, base_url: str, model_name: str, version: int | None = None,
                 timeout_s: float | None = None):
        self.base_url = base_url.rstrip("/")
        self.model_name, self.version = model_name, version
        self.timeout_s = _timeout(timeout_s)
        self._contract = None

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data,
                                         headers={"Content-Type": "application/json"})
        timeout = _seconds(self.timeout_s)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text
            raise ServingError(f"REST {e.code} from {path}: {message}") from None
        except urllib.error.URLError as e:
            raise ServingError(f"REST call to {self.base_url}{path} failed: {e.reason}") from None
        except TimeoutError:  # a read timeout is not wrapped in URLError
            raise ServingError(f"REST call to {self.base_url}{path} timed out after "
                               f"{timeout} s (serving.timeout_s)") from None
        except (OSError, http.client.HTTPException) as e:  # e.g. the server hung up
            raise ServingError(f"REST call to {self.base_url}{path} failed: "
                               f"{type(e).__name__}: {e}") from None
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ServingError(f"REST response from {path} is not a JSON object: "
                               f"{text[:200]!r}")
        return answer

    def contract(self) -> dict:
        if self._contract is None:
            from google.protobuf import json_format  # lazy: TF Serving's protos load TensorFlow
            from tensorflow_serving.apis import get_model_metadata_pb2  # lazy: as above
            path = req.rest_path(self.model_name, self.version).replace(":predict", "/metadata")
            body = self._call(path)
            try:
                meta = dict(body["metadata"]["signature_def"])
                meta.pop("@type", None)
                defs = json_format.ParseDict(meta, get_model_metadata_pb2.SignatureDefMap(),
                                             ignore_unknown_fields=True)
            except (KeyError, TypeError, ValueError, json_format.ParseError) as e:
                raise ServingError(f"REST {path}: not TF Serving model metadata "
                                   f"({type(e).__name__}: {e})") from None
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
        except (RuntimeError, KeyError, TypeError, ValueError) as e:  # not the contract's
            raise ServingError(f"REST {signature_name}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        pass


class GrpcTransport:
    """TF Serving's gRPC PredictionService (Predict, GetModelMetadata).

    Args:
      target: "host:port", e.g. "localhost:8500".
      model_name, version, timeout_s: as for RestTransport.
      credentials: grpc.ChannelCredentials (e.g. `tls_credentials(...)`) for a TLS
        channel; None = plaintext (insecure_channel).
      server_name: the name the server's certificate is checked against, when it differs
        from the target's host (TLS only).
    """

    def __init__(self, target: str, model_name: str, version: int | None = None,
                 timeout_s: float | None = None, credentials=None,
                 server_name: str | None = None):
        import grpc  # lazy: the REST client needs neither grpc nor TensorFlow
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # lazy: as above
        self.model_name, self.version = model_name, version
        self.timeout_s = _timeout(timeout_s)
        options = [("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
                   ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE)]
        if credentials is None:
            if server_name:
                raise ConfigError("serving.grpc_server_name: set, but the channel is not "
                                  "TLS (set serving.grpc_tls=true)")
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self.secure = credentials is not None
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._contract = None

    @classmethod
    def from_config(cls, target: str, model_name: str, serving_cfg: ServingConfig,
                    version: int | None = None) -> "GrpcTransport":
        """A transport with serving.timeout_s and, with serving.grpc_tls, TLS credentials
        from serving.grpc_root_certs / grpc_client_cert / grpc_client_key.

        Raises:
          ConfigError: an invalid serving config or an unreadable / non-PEM file.
        """
        serving_cfg.validate()
        credentials = None
        if serving_cfg.grpc_tls:
            credentials = tls_credentials(serving_cfg.grpc_root_certs,
                                          serving_cfg.grpc_client_cert,
                                          serving_cfg.grpc_client_key)
        return cls(target, model_name, version, serving_cfg.timeout_s, credentials,
                   serving_cfg.grpc_server_name or None)

    def _rpc(self, method, request):
        import grpc  # lazy: as in __init__
        timeout = _seconds(self.timeout_s)
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            hint = (f" after {timeout} s (serving.timeout_s)"
                    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "")
            raise ServingError(f"gRPC {e.code().name}: {e.details()}{hint}") from None

    def contract(self) -> dict:
        if self._contract is None:
            from tensorflow_serving.apis import get_model_metadata_pb2  # lazy: as in __init__
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
        import tensorflow as tf  # lazy: REST and gRPC clients do not load TensorFlow
        from tensorflow.python.saved_model import loader_impl  # lazy: as above
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
