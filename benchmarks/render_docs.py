"""Renders docs/performance.md and docs/results.md from the benchmarks' JSON results.

    .venv/bin/python benchmarks/render_docs.py                    # both, from benchmarks/results/
    .venv/bin/python benchmarks/render_docs.py --only results
    .venv/bin/python benchmarks/render_docs.py --out-dir /tmp/docs  # elsewhere; links as from docs/

performance.md: the JSONs of --results-dir (default benchmarks/results/, the full run;
`run_all.py --report-only` renders the same page from the set it ran). results.md and its
plot: benchmarks/results/run_results.json, the copy `run_results.py --write-docs` makes of
its results. Templates: benchmarks/templates/; aims: benchmarks/aims.yaml.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from report import performance as performance_page
from report import results as results_page

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOCS = REPO / "docs"
RUN_RESULTS = RESULTS / "run_results.json"


def performance(results_dir=RESULTS, doc_dir=DOCS) -> str:
    """docs/performance.md for the JSONs in `results_dir`, plot links relative to `doc_dir`."""
    return performance_page.render(pathlib.Path(results_dir), pathlib.Path(doc_dir), REPO)


def results(path=RUN_RESULTS, out_dir=DOCS) -> str:
    """docs/results.md for run_results.py's results JSON at `path`; writes its plots
    into `out_dir`."""
    return results_page.render(json.loads(pathlib.Path(path).read_text()), out_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("performance", "results"))
    parser.add_argument("--results-dir", default=str(RESULTS),
                        help="the JSONs of performance.md (default benchmarks/results)")
    parser.add_argument("--out-dir", default=str(DOCS), help="where the pages go (default docs)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = {"performance": lambda: performance(args.results_dir),
             "results": lambda: results(RUN_RESULTS, out)}
    for name, page in pages.items():
        if args.only in (None, name):
            (out / f"{name}.md").write_text(page())
            print(f"wrote {out / name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
