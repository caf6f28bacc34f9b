"""The acceptance aims of benchmarks/aims.yaml, measured on the benchmarks' JSON results.

    import aims
    rows = aims.check("bench_serving", result)   # this benchmark's aims, on its result
    aims.print_rows(rows)                         # "<claim>: <value> (aim >= 5.0: met)"
    aims.evaluate({"bench_perf": perf, ...})      # every aim whose JSON is given

Each row (plain JSON): {"claim", "value", "target", "met", "source", "json", "op", "limit",
"bound"} (op: ">=", "<=" or "increasing"; limit: the number, None for "increasing"; bound:
the value's FLOP bound when the aim names one, else None). An aim whose
value (or one of its `requires` paths) is not in the JSON is left out, as one not
measured. The text explaining a missed aim is the aim's "missed" in load().

    python benchmarks/aims.py [--results-dir DIR] [--check]

prints every aim on the JSON files in DIR (default benchmarks/results); --check exits 1
when an aim's JSON is missing or does not hold its value.
"""
from __future__ import annotations

import argparse
import ast
import json
import operator
import pathlib
import sys

import yaml

AIMS_FILE = pathlib.Path(__file__).resolve().with_name("aims.yaml")
RESULTS = AIMS_FILE.parent / "results"

_MISSING = object()
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv}


def load(path=AIMS_FILE) -> list[dict]:
    """The aims of the data file, in its order."""
    return yaml.safe_load(pathlib.Path(path).read_text())["aims"]


def resolve(data, path):
    """The value at `path` in `data` (see aims.yaml), or _MISSING."""
    for i, step in enumerate(path):
        if step == "*":
            if not isinstance(data, list):
                return _MISSING
            values = [resolve(item, path[i + 1:]) for item in data]
            return [v for v in values if v is not _MISSING]
        if isinstance(step, dict):
            data = next((item for item in data if isinstance(item, dict) and all(
                item.get(k, _MISSING) == v for k, v in step.items())), _MISSING) \
                if isinstance(data, list) else _MISSING
        else:
            data = data.get(step, _MISSING) if isinstance(data, dict) else _MISSING
        if data is _MISSING or data is None:
            return _MISSING
    return data


def _arithmetic(node, names: dict):
    if isinstance(node, ast.Expression):
        return _arithmetic(node.body, names)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_arithmetic(node.left, names),
                                          _arithmetic(node.right, names))
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    raise ValueError(f"aims.yaml: only + - * / of numbers and `where` names: {ast.dump(node)}")


def measure(aim: dict, data: dict):
    """The aim's value in its benchmark's JSON `data`, or None when it is not there."""
    if any(resolve(data, p) is _MISSING for p in aim.get("requires", [])):
        return None
    if not isinstance(aim["value"], str):
        value = resolve(data, aim["value"])
        return None if value is _MISSING or value == [] else value
    names = {name: resolve(data, p) for name, p in aim["where"].items()}
    if any(v is _MISSING for v in names.values()):
        return None
    try:
        return _arithmetic(ast.parse(aim["value"], mode="eval"), names)
    except ZeroDivisionError:
        return None


def parse_target(text: str):
    """(op, limit) of ">= 4", "<= 0.40" or "increasing"."""
    if text == "increasing":
        return text, None
    op, _, limit = text.partition(" ")
    if op not in (">=", "<="):
        raise ValueError(f"aims.yaml: unknown target {text!r}")
    return op, float(limit)


def _met(op: str, limit, value) -> bool:
    if op == "increasing":
        return all(a < b for a, b in zip(value, value[1:]))
    if isinstance(value, list):  # every item
        return all(_met(op, limit, v) for v in value)
    return value >= limit if op == ">=" else value <= limit


def holds(target: str, value) -> bool:
    """Whether `value` meets `target` (">= 0.02", ...)."""
    return _met(*parse_target(target), value)


def quality(path=AIMS_FILE) -> dict:
    """The targets of docs/results.md's checks: {name: ">= X"} (aims.yaml, quality)."""
    return yaml.safe_load(pathlib.Path(path).read_text())["quality"]


def evaluate(results: dict, only: str | None = None, path=AIMS_FILE) -> list[dict]:
    """Rows of the aims (of benchmark `only`, default all) whose JSON is in `results`
    ({json name: loaded JSON}) and holds their value."""
    rows = []
    for aim in load(path):
        data = results.get(aim["json"])
        if (only and aim["json"] != only) or data is None:
            continue
        value = measure(aim, data)
        if value is None:
            continue
        op, limit = parse_target(aim["target"])
        bound = resolve(data, aim["bound"]) if "bound" in aim else None
        rows.append({"claim": aim["claim"], "value": value, "target": aim["target"],
                     "met": _met(op, limit, value), "source": aim.get("source", aim["json"]),
                     "json": aim["json"], "op": op, "limit": limit,
                     "bound": None if bound is _MISSING else bound})
    return rows


def check(benchmark: str, result: dict) -> list[dict]:
    """The aims of `benchmark` (its JSON name, e.g. "bench_serving") on its `result`."""
    return evaluate({benchmark: result}, only=benchmark)


def print_rows(rows: list[dict]) -> None:
    for a in rows:
        value = (", ".join(f"{v:.3g}" for v in a["value"]) if isinstance(a["value"], list)
                 else f"{a['value']:.3g}")
        bound = f", FLOP bound {a['bound']:.3g}" if a.get("bound") is not None else ""
        print(f"{a['claim']}: {value} (aim {a['target']}{bound}: "
              f"{'met' if a['met'] else 'NOT met'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when an aim's JSON is missing or lacks its value")
    args = parser.parse_args(argv)
    results_dir = pathlib.Path(args.results_dir)
    names = {aim["json"] for aim in load()}
    results = {n: json.loads((results_dir / f"{n}.json").read_text()) for n in names
               if (results_dir / f"{n}.json").exists()}
    rows = evaluate(results)
    print_rows(rows)
    shown = {a["claim"] for a in rows}
    unresolved = [f"{aim['claim']} ({aim['json']}.json)" for aim in load()
                  if aim["claim"] not in shown]
    for claim in unresolved:
        print(f"not measured: {claim}")
    return 1 if args.check and unresolved else 0


if __name__ == "__main__":
    sys.exit(main())
