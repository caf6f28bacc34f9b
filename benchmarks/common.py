"""What the benchmarks share: paths, the machine description, writing a result, the source
tree of another commit, worker subprocesses and the synthetic training workload.

A plain module (no benchmark imports another benchmark). Scripts run as
`python benchmarks/NAME.py` find it because their own folder is sys.path[0].
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# The last commit before the throughput work (dense Adam and XLA off by default): the
# "before" code of bench_train and bench_eval.
BEFORE_COMMIT = "c6a3be9"

TASKS = ("click", "like", "finish")


# --------------------------------------------------------------------------- results
def machine_info() -> dict:
    """CPU model and vector / matrix ISA flags (/proc/cpuinfo), cores, Python, TensorFlow,
    load averages (1 / 5 / 15 min) and the date (UTC)."""
    cpu, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile",
                                   "fma"}),
            "python": platform.python_version(),
            "tensorflow": importlib.metadata.version("tensorflow"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def write_json(result: dict, path) -> pathlib.Path:
    """Writes `result` as indented JSON to `path` (its folder made if needed)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path


def write_result(result: dict, path, load_start=None) -> dict:
    """Adds the time and the machine (load averages at `load_start` and now) to `result`
    and writes it as JSON."""
    machine = machine_info()
    del machine["load_average_at_start"]  # this is the end: load_average_end below
    if load_start is not None:
        machine["load_average_start"] = [round(x, 2) for x in load_start]
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result.update(timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), machine=machine)
    write_json(result, path)
    return result


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


# --------------------------------------------------------------------------- processes
def source_tree(commit: str, dest: str) -> str:
    """The repository's files at `commit` (git archive), in `dest`."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def run_job(script: str, job: dict, timeout: float) -> dict:
    """Runs `script --worker JOB_JSON` in a fresh process (TensorFlow's BFC allocator on the
    CPU, so peak memory can be read); its last stdout line is the result, or {"error"}."""
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="2",
               TF_USE_LEGACY_KERAS="1", PYTHONPATH=str(REPO))
    try:
        out = subprocess.run([sys.executable, script, "--worker", json.dumps(job)],
                             env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip()
                else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- workload
def synthetic_batch(requests: int, length: int, targets: int, seed: int = 0, tgt_len=None):
    """One request-level training batch (core.random_inputs): `requests` requests, each with
    a full history of `length` events and `targets` target slots, all valid unless
    `tgt_len` (valid targets per request) says otherwise; random labels for TASKS."""
    import tensorflow as tf
    from core.random_inputs import random_requests
    inputs, labels = random_requests(requests, length, targets, seed,
                                     hist_len=[length] * requests,
                                     tgt_len=[targets] * requests if tgt_len is None else tgt_len,
                                     tasks=TASKS)
    return ({k: tf.constant(v) for k, v in inputs.items()},
            {k: tf.constant(v) for k, v in labels.items()})


def transformer_attention_bytes(sequences: int, length: int, heads: int, layers: int) -> int:
    """Score / softmax tensors alive in a training step: 2 stored per layer + 2 transient."""
    return sequences * heads * (length + 1) ** 2 * 4 * (2 * layers + 2)


def fitting_sequences(full: int, length: int, heads: int, layers: int,
                      limit: float) -> list[int]:
    """Powers of two below `full` (and dividing it) whose transformer attention fits `limit`."""
    return [s for s in (2**i for i in range(12)) if s < full and full % s == 0
            and transformer_attention_bytes(s, length, heads, layers) <= limit]
