"""Packaging: pyproject.toml declares what the code imports, and environment.yml stays in step with it."""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
ENV = yaml.safe_load((REPO / "environment.yml").read_text())


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(req: str) -> tuple[str, str]:
    """('name', 'version spec') of a requirement string (no markers are used in this project)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*", req)
    assert m, req
    return _canon(m.group(1)), m.group(3).replace(" ", "")


DEPENDENCIES = dict(_split(r) for r in PROJECT["dependencies"])
EXTRAS = PROJECT["optional-dependencies"]
TEST_EXTRA = dict(_split(r) for r in EXTRAS["test"])
#: Everything the full install brings (core + every extra; the extras' references to l2h[...] left out).
FULL = {**DEPENDENCIES, **{name: spec for reqs in EXTRAS.values() for name, spec in map(_split, reqs) if name != "l2h"}}
#: The core modules: what `pip install l2h` (no extras) must be able to import and run.
CORE = (
    "algorithm",
    "exact",
    "expcache",
    "reference",
    "hierarchy",
    "metrics",
    "validation",
    "io",
    "levels",
    "compare",
    "outdir",
    "cli",
    "options",
    "progress",
    "kernels",
    "errors",
    "report/figures",
    "report/html",
)


def _env_entries() -> tuple[list[str], list[str]]:
    conda, pip = [], []
    for dep in ENV["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            conda.append(dep)
    return conda, pip


def test_environment_python_matches_requires_python():
    conda, _ = _env_entries()
    pythons = [d for d in conda if re.match(r"python\b", d)]
    assert pythons == [f"python{PROJECT['requires-python']}"]


def test_environment_installs_the_project_with_its_test_extra():
    _, pip = _env_entries()
    assert "-e .[all,test]" in pip  # every dependency of pyproject.toml, at its declared versions


def test_environment_pins_agree_with_pyproject():
    """Any package environment.yml lists besides python/pip (and the C compiler for the extension) must be a
    pyproject dependency with the same spec."""
    conda, pip = _env_entries()
    declared = {**FULL, **TEST_EXTRA}
    for entry in [*conda, *pip]:
        if entry.startswith("-e ") or re.match(r"(python|pip)\b", entry) or entry == "c-compiler":
            continue
        name, spec = _split(entry.replace("==", "=="))
        assert name in declared, f"environment.yml lists {name}, which pyproject.toml does not declare"
        assert spec == declared[name], f"{name}: environment.yml says {spec!r}, pyproject.toml {declared[name]!r}"


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def _imports(paths) -> dict[str, str]:
    """{top-level module: first file importing it} over absolute imports in ``paths``."""
    found: dict[str, str] = {}
    for path in paths:
        if path.suffix != ".py":  # Snakemake files are not Python: read their import lines
            for m in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", path.read_text(), re.M):
                found.setdefault(m.group(1), str(path.relative_to(REPO)))
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        optional = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers)
            for stmt in node.body
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in optional:  # `try: import x / except ImportError:` is an optional dependency
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _providers(module: str) -> set[str]:
    return {_canon(d) for d in _distributions().get(module, [])}


@pytest.mark.parametrize(
    "where, declared",
    [
        ("src", FULL),
        ("tests", {**FULL, **TEST_EXTRA}),
        ("workflow", FULL),
        ("benchmarks", FULL),
    ],
)
def test_every_imported_package_is_declared(where, declared):
    """Direct imports need a direct declaration (not just a dependency of a dependency)."""
    files = (
        sorted((REPO / where).rglob("*.py"))
        + sorted((REPO / where).rglob("*.smk"))
        + sorted((REPO / where).rglob("Snakefile"))
    )
    assert files or where == "benchmarks"
    local = {p.stem for p in (REPO / where).rglob("*.py")} | {"conftest"}
    for module, path in _imports(files).items():
        if module in sys.stdlib_module_names or module in local or module == "l2h":
            continue
        providers = _providers(module)
        assert providers, f"{path} imports {module!r}, which no installed distribution provides"
        assert providers & set(declared), (
            f"{path} imports {module!r} (from {sorted(providers)}), not declared in pyproject.toml"
        )


def test_readme_and_entry_points():
    assert (REPO / PROJECT["readme"]).is_file()
    readme = (REPO / "README.md").read_text()
    install = (
        "python3 -m venv .venv && .venv/bin/pip install -q uv && "
        ".venv/bin/uv pip install -q --compile-bytecode -p .venv/bin/python -e '.[all,test]'"
    )
    assert f"{install} && .venv/bin/snakemake --cores all" in readme
    assert f"{install} && .venv/bin/pytest" in readme
    assert PROJECT["scripts"]["l2h"] == "l2h.cli:main"
    assert (REPO / "Snakefile").is_file()
    assert (REPO / "workflow" / "profiles" / "slurm" / "config.yaml").is_file()


def test_environment_brings_the_compiler_of_the_declared_extension():
    modules = PYPROJECT["tool"]["setuptools"]["ext-modules"]
    assert [m["name"] for m in modules] == ["l2h._kernels", "l2h.clusterers._matmul"]
    assert all((REPO / source).is_file() for m in modules for source in m["sources"])
    assert all(m["optional"] for m in modules)  # without a compiler: numpy kernels, torch's matmul for TURTLE
    conda, _ = _env_entries()
    assert "c-compiler" in conda


def test_declared_package_data_exists():
    """Every package-data file pyproject declares is in the source tree (py.typed: the package is typed)."""
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "py.typed" in declared["l2h"]
    missing = [
        f"{package}/{name}"
        for package, names in declared.items()
        for name in names
        if not list((REPO / "src" / package.replace(".", "/")).glob(name))
    ]
    assert not missing


def test_extras_are_named_by_use_and_all_brings_every_one():
    assert set(EXTRAS) >= {"features", "clusterers", "baselines", "pipeline", "slurm", "all", "test"}

    def expand(extra: str) -> set[str]:
        out = set()
        for req in EXTRAS[extra]:
            m = re.fullmatch(r"l2h\[([a-z,]+)\]", req)
            out |= set().union(*(expand(e) for e in m.group(1).split(","))) if m else {_split(req)[0]}
        return out

    everything = set().union(*(expand(e) for e in EXTRAS if e != "test"))
    for extra in ("features", "clusterers", "baselines", "pipeline"):  # their builders validate options
        assert {"jsonschema", "referencing", "pyyaml"} <= expand(extra), extra
    assert expand("all") == everything
    for heavy in ("torch", "snakemake", "hydra-core", "open-clip-torch", "timm", "clustpy", "scikit-learn"):
        assert heavy not in DEPENDENCIES and heavy in everything


def test_core_modules_import_only_core_dependencies_at_module_level():
    """The core's module-level imports are the core's dependencies (heavier ones only inside functions)."""
    for name in CORE:
        path = REPO / "src" / "l2h" / f"{name}.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                isinstance(node, ast.ImportFrom) and (node.level or node.module == "__future__")
            ):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top == "l2h":
                        continue
                    assert _providers(top) & set(DEPENDENCIES), f"{path.name} imports {top} at module level"
