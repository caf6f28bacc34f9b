"""SavedModel export, export verification and the TF Serving client.

    export.py      `stca export`: SavedModel with serving_default / encode_user /
                   score_candidates, warmup requests, metadata, models.config
    signatures.py  the signature contract and its tf.functions
    verify.py      `stca verify-export`: the release gate
    session.py     load and run an export as TF Serving does (TF1 loader, tensor names)
    client.py      RankingClient: request building, LRU user cache, chunked scoring
    requests.py    request builders (features + idhash), REST JSON and gRPC protos
    transport.py   REST, gRPC and in-process transports
    cache.py       LRU cache bounded by bytes with TTL
    offline.py     in-process scoring; demo_score for `stca demo`
    layout.py      export directory layout

The client side (client, requests, transport, cache, layout) never imports `model`.
"""
import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)


def demo_score(export_dir: str, data_dir: str) -> dict:
    """One held-out request scored via serving_default and via encode_user +
    score_candidates (RankingClient, in-process transport); see serving/offline.py."""
    from serving.offline import demo_score as _demo_score
    return _demo_score(export_dir, data_dir)
