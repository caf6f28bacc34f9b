"""Per-op time of a TF profiler trace (tf.profiler.experimental start / stop), from XPlane.

The profiler writes LOGDIR/plugins/profile/<run>/<host>.xplane.pb. On the CPU, every
executed TensorFlow op is an event named "<op name>:<op type>" on the executor threads
(lines "tf_Compute/..." of the "/host:CPU" plane), with its wall duration. Ops on the two
executor threads overlap in time, so shares are of the summed op time (CPU time of ops),
not of the step's wall time.

    summary = profile_ops.summarize(logdir, steps=3)
    summary["by_type"][:5]    # [{"op": "MatMul", "ms_per_step": ..., "share": ...}, ...]
    summary["by_scope"]       # forward / backward (gradient_tape) / optimizer / other
"""
from __future__ import annotations

import collections
import glob
import os


def _scope(name: str) -> str:
    """forward / backward / optimizer / other, from the op's name scope."""
    if name.startswith("gradient_tape/") or "/gradients/" in name:
        return "backward (gradient_tape)"
    if name.split("/", 1)[0] in ("Adam", "AdamW", "Adagrad", "SGD") or "/Adam/" in name:
        return "optimizer update"
    if name.startswith("ranking_model/"):
        return "forward"
    return "other (loss, metrics, clipping, casts)"


def _group(name: str) -> str:
    """A readable op group: the first two name-scope levels without numeric suffixes."""
    parts = [p.rstrip("0123456789").rstrip("_") for p in name.split("/")[:3]]
    return "/".join(p for p in parts if p)


def op_events(logdir: str):
    """Yields (op name, op type, duration seconds) of every op event in the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}/plugins/profile")
    space = xplane_pb2.XSpace()
    with open(max(paths, key=os.path.getmtime), "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                if ":" not in label or label.startswith("ExecutorState"):
                    continue
                name, op_type = label.rsplit(":", 1)
                yield name, op_type, event.duration_ps * 1e-12


def summarize(logdir: str, steps: int, top: int = 12) -> dict:
    """Op time per step, by op type, by name group and by scope (shares of summed op time)."""
    by_type, by_group, by_scope = (collections.Counter() for _ in range(3))
    for name, op_type, seconds in op_events(logdir):
        by_type[op_type] += seconds
        by_group[f"{_group(name)} ({op_type})"] += seconds
        by_scope[_scope(name)] += seconds
    total = sum(by_type.values()) or 1e-12

    def rows(counter, key, n):
        return [{key: k, "ms_per_step": 1e3 * v / steps, "share": v / total}
                for k, v in counter.most_common(n)]

    return {"steps": steps, "op_ms_per_step": 1e3 * total / steps,
            "by_type": rows(by_type, "op", top), "by_group": rows(by_group, "group", top),
            "by_scope": rows(by_scope, "scope", len(by_scope))}
