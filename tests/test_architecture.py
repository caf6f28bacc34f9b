"""The import rule of docs/architecture.md: packages import only downward.

    core      -> core
    model     -> core, model
    beam_jobs -> core, beam_jobs
    serving   -> core, model, serving
    pipeline  -> everything (the roof)

Every import of every module is read from its source (module level and inside functions),
so an upward import hidden in a function fails too. A function-local import must say why
on its line with a `# lazy:` comment (import time, optional dependencies).
"""
import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "beam_jobs": {"core", "beam_jobs"},
    "serving": {"core", "model", "serving"},
    "pipeline": {"core", "model", "beam_jobs", "serving", "pipeline"},
}


def _imports(path: pathlib.Path):
    """(line, imported top-level package, inside a function, source line) of each import."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            yield node.lineno, name.split(".")[0], id(node) in in_function, lines[node.lineno - 1]


def _modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_downward(package):
    upward = [f"{path.relative_to(REPO)}:{line}: imports {name}"
              for path in _modules(package)
              for line, name, _, _ in _imports(path)
              if name in ALLOWED and name not in ALLOWED[package]]
    assert not upward, "upward imports (docs/architecture.md):\n" + "\n".join(upward)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_function_local_imports_say_why(package):
    unexplained = [f"{path.relative_to(REPO)}:{line}: {text.strip()}"
                   for path in _modules(package)
                   for line, _, local, text in _imports(path)
                   if local and "# lazy:" not in text]
    assert not unexplained, ("function-local imports without a `# lazy:` reason:\n"
                             + "\n".join(unexplained))


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: an upward import inside a function and an unexplained local
    import are both found."""
    module = tmp_path / "bad.py"
    module.write_text("import core\n\n\ndef f():\n    from pipeline import train\n"
                      "    import tensorflow  # lazy: optional\n")
    found = list(_imports(module))
    assert (5, "pipeline", True, "    from pipeline import train") in found
    assert [name for _, name, local, _ in found if local] == ["pipeline", "tensorflow"]
    assert "pipeline" not in ALLOWED["serving"] and "serving" not in ALLOWED["model"]


def test_core_sets_the_keras_environment_once():
    """core/__init__ sets TF_USE_LEGACY_KERAS; no other package sets it again."""
    setters = [str(p.relative_to(REPO)) for pkg in ALLOWED for p in _modules(pkg)
               if 'os.environ["TF_USE_LEGACY_KERAS"]' in p.read_text()]
    assert setters == ["core/__init__.py"]


def test_the_beam_job_imports_no_tensorflow():
    """Every Beam worker process imports the modules its DoFns live in; TensorFlow's
    import (~2 s of CPU) is not one of them (records are written by core.example_writer,
    feature names come from core.schema)."""
    code = ("import sys; import beam_jobs.preprocess; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:500]
