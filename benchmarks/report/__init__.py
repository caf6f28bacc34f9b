"""The benchmark report: Jinja2 templates of benchmarks/templates/ filled from the JSON
results (report.performance, report.results) and the plots (report.plots).

Benchmarks may use it to print their tables and draw their figure; it imports no
benchmark. The command line is benchmarks/render_docs.py.

Filters of every template:
  fmt(spec)        format(value, spec): {{ x | fmt(".2f") }}, {{ n | fmt(",") }}
  by(key)          a list of objects as {object[key]: object}
  find(**fields)   the first object of a list with those field values, or None
"""
from __future__ import annotations

import functools
import pathlib

import jinja2

TEMPLATES = pathlib.Path(__file__).resolve().parents[1] / "templates"


def _find(rows, **fields):
    return next((r for r in rows if all(r.get(k) == v for k, v in fields.items())), None)


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=format, by=lambda rows, key: {r[key]: r for r in rows}, find=_find)
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
