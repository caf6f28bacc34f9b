"""The benchmark report: Jinja2 templates of benchmarks/templates/ filled from the JSON
results (report.performance, report.results) and the plots (report.plots).

Benchmarks may use it to print their tables and draw their figure; it imports no
benchmark. The command line is benchmarks/render_docs.py.

Filters of every template:
  fmt(spec)        format(value, spec): {{ x | fmt(".2f") }}, {{ n | fmt(",") }}
  by(key)          a list of objects as {object[key]: object}
  find(**fields)   the first object of a list with those field values, or None
  line_fit(ys)     least-squares y = intercept + slope x of xs | line_fit(ys): a dict with
                   intercept, slope and max_rel_residual (largest |residual| / y)
"""
from __future__ import annotations

import functools
import pathlib

import jinja2

TEMPLATES = pathlib.Path(__file__).resolve().parents[1] / "templates"


def _find(rows, **fields):
    return next((r for r in rows if all(r.get(k) == v for k, v in fields.items())), None)


def _line_fit(xs, ys) -> dict:
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError(f"line_fit needs >= 2 distinct x with one y each: {xs}, {ys}")
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
             / sum((x - mean_x) ** 2 for x in xs))
    intercept = mean_y - slope * mean_x
    residual = max(abs(y - intercept - slope * x) / abs(y) for x, y in zip(xs, ys))
    return {"intercept": intercept, "slope": slope, "max_rel_residual": residual}


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=format, by=lambda rows, key: {r[key]: r for r in rows}, find=_find,
                       line_fit=_line_fit)
    return env


def render(template: str, **context) -> str:
    """benchmarks/templates/`template` rendered with `context`."""
    return environment().get_template(template).render(**context)


def render_string(text: str, **context) -> str:
    """`text` as a template (e.g. an aim's explanation in benchmarks/aims.yaml)."""
    return environment().from_string(text).render(**context)


def macro(template: str, name: str, *args) -> str:
    """Macro `name` of benchmarks/templates/`template` called with `args`."""
    return getattr(environment().get_template(template).module, name)(*args)
