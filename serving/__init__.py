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
    single_flight.py  one encode_user per cold user for concurrent requests
    offline.py     in-process scoring; demo_score for `stca demo`
    layout.py      export directory layout

The client side (client, requests, transport, cache, single_flight, layout) never imports
`model`.
"""
import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
