"""Ablation harness: which piece of the model stops it from learning from the history?

Starts from a reference that learns (a plain DIN: one embedding table per ID shared by the
history and the target, MLP attention with sum pooling, MLP head, plain Adam) and swaps in
the project's pieces one at a time. Every variant trains on the same batches of the
project's input pipeline and is scored on the same eval requests, with the history as is,
emptied, and swapped between requests.

    python benchmarks/history_ablation.py --data runs/data --variant ref --steps 400
"""
from __future__ import annotations

import argparse
import json
import time

import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras as keras

from model.heads import MLPHead
from model.layers.din_attention import DINAttention
from model.layers.hashed_embedding import HashedEmbedding
from model.encoders.base import SequenceEncoder
from core import config as config_lib
from pipeline import evaluate as evaluate_lib
from core import input as input_lib
from core import metrics as metrics_lib
from pipeline.train import make_optimizer


class ConcatEmbedding(keras.layers.Layer):
    """DIN's embedding: [e(item); e(author)] from tables shared by history and targets."""

    def __init__(self, d_model, item_buckets, author_buckets, init="uniform", **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.item_buckets, self.author_buckets = d_model, item_buckets, author_buckets
        self.init = (keras.initializers.RandomUniform(-0.05, 0.05) if init == "uniform"
                     else keras.initializers.RandomNormal(stddev=1.0))

    def build(self, input_shape=None):
        half = self.d_model // 2
        self.item = HashedEmbedding(self.item_buckets, half, self.init, name="item")
        self.author = HashedEmbedding(self.author_buckets, self.d_model - half, self.init,
                                      name="author")
        self.item.build((None, None))
        self.author.build((None, None))
        super().build(input_shape)

    def _embed(self, items, authors):
        return tf.concat([self.item(items), self.author(authors)], axis=-1)

    def embed_history(self, inputs):
        return self._embed(inputs["hist_item_id"], inputs["hist_author_id"])

    def embed_targets(self, inputs):
        return self._embed(inputs["tgt_item_id"], inputs["tgt_author_id"])


class NoUserTokens(keras.layers.Layer):
    num_tokens = 0

    def __init__(self, d_model, **kwargs):
        super().__init__(**kwargs)
        self.d_model = d_model

    def call(self, user_id, history, history_mask):
        return tf.zeros([tf.shape(history)[0], 0, self.d_model], history.dtype)


class SumDINAttention(DINAttention):
    """DeepCTR's DIN pooling: unnormalised attention weights (weight_normalization=False)."""

    def attend(self, events, history_keys, targets, history_mask):
        events = tf.cast(events, self.compute_dtype)
        targets = tf.cast(targets, self.compute_dtype)
        _, w_target, w_product = self._first_kernels()
        target_term = tf.matmul(targets, w_target) + self.first.bias
        product_term = tf.matmul(events[:, None], targets[..., None] * w_product)
        hidden = self.activation(history_keys[:, None] + target_term[:, :, None] + product_term)
        for i, layer in enumerate(self.rest):
            hidden = layer(hidden)
            if i < len(self.rest) - 1:
                hidden = self.activation(hidden)
        weights = hidden[..., 0] * tf.cast(history_mask[:, None, :], hidden.dtype)
        return tf.matmul(weights, events)


class SumDINEncoder(SequenceEncoder):
    def build(self, input_shape=None):
        self.attention = SumDINAttention(self.d_model, (80, 40), name="attention")
        self.attention.build(None)
        super().build(input_shape)

    def call(self, events, history_mask, targets, user_tokens=None, training=None, **kwargs):
        return self.attention(events, targets, history_mask)


class SharedContentEmbedding(keras.layers.Layer):
    """x = c + SwiGLU(features) with content c = e(item) + e(author) on both sides."""

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    def build(self, input_shape=None):
        if not self.base.built:
            self.base.build(None)
        super().build(input_shape)

    def embed_history(self, inputs):
        from model.layers.event_embedding import time_delta_bucket
        b = self.base
        item, author = b.item(inputs["hist_item_id"]), b.author(inputs["hist_author_id"])
        tb = time_delta_bucket(inputs["request_ts"], inputs["hist_ts"], b.time_buckets,
                               b.time_log_base)
        feats = tf.concat([item, b.action(inputs["hist_action"]), author, b.time(tb)], -1)
        return item + author + b.event_ffn(feats)

    def embed_targets(self, inputs):
        b = self.base
        item, author = b.item(inputs["tgt_item_id"]), b.author(inputs["tgt_author_id"])
        return item + author + b.target_ffn(tf.concat([item, author], -1))


def patch_stca(encoder, spec):
    """Residual views / queries (X~ = LN(X + SwiGLU(X))), W_K = W_Q at initialisation."""
    if spec.get("resid") == "1":
        for view in encoder.views:
            view.call = (lambda v: (lambda x: v.norm(x + v.ffn(x))))(view)
        for i, q in enumerate(encoder.queries):
            def qcall(tokens, q=q):
                tokens = list(tokens)
                x = tf.concat([tf.cast(t, q.compute_dtype) for t in tokens], -1)
                if q.project is not None:
                    x = q.project(x)
                return q.norm(tf.cast(tokens[-1], q.compute_dtype) + q.ffn(x))
            q.call = qcall
    if spec.get("tied") == "1":
        for att in encoder.attentions:
            att.key_kernel.assign(att.query_kernel)


class FeatureModelMixin:
    """References without learned matching: logits from the count of exact author matches
    (with a positive action / any), or exact-match attention over action embeddings."""

    def call(self, inputs, training=False):
        length = tf.shape(inputs["hist_item_id"])[1]
        valid = tf.sequence_mask(inputs["hist_len"], length)
        match = tf.equal(inputs["tgt_author_id"][:, :, None],
                         inputs["hist_author_id"][:, None, :])
        match = tf.logical_and(match, valid[:, None, :])
        if self.kind == "count":
            positive = tf.logical_and(match, (inputs["hist_action"] > 0)[:, None, :])
            counts = [tf.reduce_sum(tf.cast(x, tf.float32), -1) for x in (positive, match)]
            return self.readout(tf.math.log1p(tf.stack(counts, -1)))
        scores = tf.where(valid[:, None, :], tf.where(match, self.beta, 0.0), -1e30)
        sink = tf.zeros_like(scores[..., :1]) + self.sink
        alpha = tf.nn.softmax(tf.concat([sink, scores], -1), -1)[..., 1:]
        pooled = tf.matmul(alpha, self.embedding.action(inputs["hist_action"]))
        return self.readout(tf.concat([pooled, tf.reduce_sum(alpha, -1, keepdims=True)], -1))


def build_feature_model(cfg, kind):
    from model.ranking_model import RankingModel
    model = type("FeatureModel", (FeatureModelMixin, RankingModel), {})(cfg.model, cfg.tasks)
    model.kind = kind
    model.embedding.build(None)
    model.readout = keras.Sequential([keras.layers.Dense(32, activation="relu"),
                                      keras.layers.Dense(len(cfg.tasks))])
    model.beta = tf.Variable(0.0, name="beta")
    model.sink = tf.Variable(0.0, name="sink")
    model.built = True
    return model


def build_variant(cfg, spec: dict):
    """The project's RankingModel with the pieces named in `spec` swapped for reference ones."""
    mc = cfg.model
    from model.ranking_model import RankingModel
    model = RankingModel(mc, cfg.tasks,
                         clip_norm=cfg.train.clip_norm if spec["opt"] == "project" else 0.0)
    d = mc.d_model
    if spec["embed"] == "shared":
        model.embedding = SharedContentEmbedding(model.embedding, name="embedding_shared")
    elif spec["embed"] != "project":
        model.embedding = ConcatEmbedding(d, mc.item_buckets, mc.author_buckets,
                                          init=spec["embed"].split("_")[-1], name="embedding")
    if spec["user"] == "none":
        model.user_tokens = NoUserTokens(d, name="user_tokens")
        if spec["head"] == "project":  # the head's token count changes with the user tokens
            from model.heads import build_head
            model.head = build_head(mc, len(cfg.tasks), num_tokens=2)
    if spec["encoder"] == "din_sum":
        model.encoder = SumDINEncoder(d, name="encoder")
    if spec["head"] == "mlp":
        model.head = MLPHead(len(cfg.tasks), num_tokens=model.user_tokens.num_tokens + 2,
                             token_dim=d, width=mc.head_width, num_layers=mc.head_layers,
                             name="head")
    for layer in (model.embedding, model.user_tokens, model.encoder, model.head):
        if not layer.built:
            layer.build(None)
    model.built = True
    if spec["encoder"] in ("project", "stca"):
        patch_stca(model.encoder, spec)

    return model


def evaluate(model, cfg, data_dir, length, mode="real"):
    """AUC / GAUC per task on the eval split at `length` (history: real | empty | swapped,
    as `stca evaluate`'s history-use check)."""
    users, labels, scores, _, _ = evaluate_lib.predict(
        model, input_lib.eval_dataset(data_dir, cfg, length), cfg.tasks, history=mode)
    rep = metrics_lib.ranking_report(cfg.tasks, users, labels, scores)
    return {t: {"auc": round(rep[t]["auc"], 4), "gauc": round(rep[t]["gauc"], 4),
                "score_std": round(float(np.std(scores[t])), 4)} for t in cfg.tasks}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--variant", default="embed=concat_uniform,encoder=din_sum,user=none,"
                                          "head=mlp,opt=plain")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lengths", default="64,1024")
    ap.add_argument("--modes", default="real,empty")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default="")
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args(argv)
    spec = dict(embed="project", encoder="project", user="project", head="project",
                opt="project")
    for part in args.variant.split(","):
        if part:
            k, v = part.split("=")
            spec[k] = v
    overrides = ["model.d_model=32", "model.num_heads=4", "model.num_layers=3",
                 "train.token_budget=16384", "train.length.l_min=64", "train.length.l_max=1024",
                 "eval.max_requests=1500", f"train.seed={args.seed}",
                 f"train.steps={args.steps}", "train.warmup_steps=50"] + args.set
    if spec["encoder"] not in ("project", "din_sum"):
        overrides.append(f"model.encoder={spec['encoder']}")
    # Unset: the model's defaults.
    if "match" in spec:
        overrides.append("model.id_match=[" + spec["match"].replace("+", ",") + "]")
    if "sink" in spec:
        overrides.append(f"model.attention_sink={spec['sink']}")
    cfg = config_lib.load_config(None, overrides)
    keras.utils.set_random_seed(args.seed)
    if spec.get("feature"):
        model = build_feature_model(cfg, spec["feature"])
        model(next(iter(input_lib.train_dataset(args.data, cfg).take(1)))[0])
    else:
        model = build_variant(cfg, spec)
    if spec["opt"] == "project":
        opt = make_optimizer(cfg.train, cfg.model.precision)
    else:
        opt = keras.optimizers.Adam(args.lr)
    model.compile(optimizer=opt)
    opt.build(model.trainable_variables)
    ds = input_lib.train_dataset(args.data, cfg)
    step_fn = tf.function(model.train_step, input_signature=[ds.element_spec],
                          jit_compile=True)
    t0 = time.time()
    losses, targets = [], 0
    for step, batch in enumerate(ds.take(args.steps), start=1):
        logs = step_fn(batch)
        losses.append(float(logs["loss"]))
        targets += int(batch[0]["tgt_len"].numpy().sum())
        if step % args.log_every == 0:
            aucs = " ".join(f"{k}={float(v):.3f}" for k, v in logs.items() if k.startswith("auc"))
            print(f"step {step} loss={np.mean(losses[-args.log_every:]):.4f} {aucs} "
                  f"{time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0
    result = {"variant": spec, "seed": args.seed, "steps": args.steps, "targets": targets,
              "train_s": round(train_s, 1), "loss_last_50": float(np.mean(losses[-50:])),
              "overrides": overrides, "eval": {}}
    for length in [int(x) for x in args.lengths.split(",")]:
        row = {mode: evaluate(model, cfg, args.data, length, mode)
               for mode in args.modes.split(",")}
        result["eval"][length] = row
        print(f"L={length} " + " | ".join(
            f"{mode}: " + " ".join(f"{t}={row[mode][t]['auc']:.4f}/{row[mode][t]['gauc']:.4f}"
                                   for t in cfg.tasks) for mode in row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
