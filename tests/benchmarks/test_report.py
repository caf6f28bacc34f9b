"""The generated docs match the committed benchmark results, and every aim can be read.

docs/performance.md and docs/results.md are rendered by benchmarks/render_docs.py from the
JSON in benchmarks/results/ (templates in benchmarks/templates/, aims in
benchmarks/aims.yaml): a template, aim or renderer change without regenerating the docs
fails here. The tools run as the scripts they are (their folder first on sys.path).
"""
import difflib
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"


def _run(*args: str, cwd: pathlib.Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("docs")
    proc = _run("benchmarks/render_docs.py", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("page", ["performance.md", "results.md"])
def test_committed_doc_is_rendered_from_committed_json(rendered, page):
    committed = (REPO / "docs" / page).read_text()
    fresh = (rendered / page).read_text()
    diff = "".join(list(difflib.unified_diff(
        committed.splitlines(True), fresh.splitlines(True), f"docs/{page}", "rendered"))[:60])
    assert fresh == committed, (f"docs/{page} differs from what benchmarks/render_docs.py "
                                f"renders (re-run it):\n{diff}")


def test_every_aim_resolves_in_its_json():
    proc = _run("benchmarks/aims.py", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not measured" not in proc.stdout


def test_every_missed_aim_explanation_renders():
    """Each aim's `missed` text (Jinja) renders on the committed JSON, as if missed."""
    code = """
import pathlib, sys
from report import performance
data = performance.load(pathlib.Path("results"))
rows = performance.measured_aims(data, explain_all=True)
bad = [a["claim"] for a in rows if not a["explanation"].strip()]
print(len(rows), bad)
sys.exit(1 if bad else 0)
"""
    proc = _run("-c", code, cwd=BENCHMARKS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_line_fit_filter_is_least_squares():
    """The `line_fit` filter (the serving aims' fixed + per-candidate cost) against
    numpy.polyfit, on an exact line and on scattered points."""
    code = """
import json, numpy as np
from report import render_string
xs, ys = [64, 256, 1024, 300], [9.6, 24.4, 83.7, 30.1]
fit = render_string("{{ (xs | line_fit(ys)) | tojson }}", xs=xs, ys=ys)
exact = render_string("{{ (xs | line_fit(ys)) | tojson }}", xs=[1, 2, 3], ys=[5, 7, 9])
try:
    render_string("{{ xs | line_fit(ys) }}", xs=[2, 2], ys=[1, 3])
    raised = False
except ValueError:
    raised = True
slope, intercept = np.polyfit(xs, ys, 1)
residual = np.max(np.abs(np.array(ys) - intercept - slope * np.array(xs)) / np.array(ys))
print(json.dumps([json.loads(fit), json.loads(exact), raised, [intercept, slope, residual]]))
"""
    proc = _run("-c", code, cwd=BENCHMARKS)
    assert proc.returncode == 0, proc.stderr
    fit, exact, raised, (intercept, slope, residual) = json.loads(proc.stdout)
    assert abs(fit["intercept"] - intercept) < 1e-9 and abs(fit["slope"] - slope) < 1e-12
    assert abs(fit["max_rel_residual"] - residual) < 1e-12 and residual > 1e-3
    assert exact == {"intercept": 3.0, "slope": 2.0, "max_rel_residual": 0.0}
    assert raised
