"""The layout of src/govloop, measured: module and function sizes, import cycles, lazy imports.

    python benchmarks/layout/measure.py                      # the working tree
    python benchmarks/layout/measure.py --rev 57af3eb --rev HEAD

Prints one column per revision:

* modules, and module size in lines (median, p90, max, and the largest module);
* function size in lines, methods included (median, p90, max, and the largest);
* import cycles: strongly connected components of more than one node in the
  import graph between packages (``govloop.X``) and between modules, every
  import counted (function-level ones too);
* function-level imports (inside a ``def``; ``if TYPE_CHECKING:`` blocks are not
  counted), in all and in ``cli/``, where they keep ``govloop --help`` fast.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def sources(rev: str | None) -> dict[str, str]:
    """``module name -> source`` of every module of govloop at ``rev`` (None: working tree)."""
    if rev is None:
        base = ROOT / "src"
        files = {p.relative_to(base).as_posix(): p.read_text() for p in base.rglob("*.py")}
    else:
        blob = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src/govloop"],
            capture_output=True,
            check=True,
        ).stdout
        files = {}
        with tarfile.open(fileobj=BytesIO(blob)) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.endswith(".py"):
                    f = tar.extractfile(m)
                    assert f is not None
                    files[m.name.removeprefix("src/")] = f.read().decode()
    out = {}
    for path, text in files.items():
        name = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        out[name] = text
    return out


def _quantile(values: list[int], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _imports(name: str, tree: ast.Module, modules: set[str], is_package: bool) -> set[str]:
    """The govloop modules ``name`` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("govloop"):
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> int:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    count = 0
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Any]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                size = 0
                while True:
                    top = stack.pop()
                    on.discard(top)
                    size += 1
                    if top == node:
                        break
                count += size > 1
    return count


def _function_imports(tree: ast.Module) -> int:
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    n += 1
    return n


def measure(rev: str | None) -> dict[str, str]:
    src = sources(rev)
    modules = set(src)
    trees = {name: ast.parse(text) for name, text in src.items()}
    sizes = {name: len(text.splitlines()) for name, text in src.items()}
    functions: dict[str, int] = {}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                end = node.end_lineno or node.lineno
                functions[f"{name}:{node.name}@{node.lineno}"] = end - node.lineno + 1
    packages = {name: src[name] for name in src}
    graph = {
        name: _imports(name, trees[name], modules, f"{name}.__init__" in packages or False)
        for name in modules
    }
    for name in modules:  # a package's __init__ is the module of its own name
        is_pkg = any(other.startswith(name + ".") for other in modules)
        graph[name] = _imports(name, trees[name], modules, is_pkg)
    top = {name.split(".")[1] if "." in name else "<root>" for name in modules}
    pkg_graph: dict[str, set[str]] = {p: set() for p in top}
    for name, deps in graph.items():
        a = name.split(".")[1] if "." in name else "<root>"
        for d in deps:
            b = d.split(".")[1] if "." in d else "<root>"
            if a != b:
                pkg_graph[a].add(b)
    lazy = {name: _function_imports(tree) for name, tree in trees.items()}
    mod_sizes = sorted(sizes.values())
    fn_sizes = sorted(functions.values())
    biggest_mod = max(sizes, key=sizes.__getitem__)
    biggest_fn = max(functions, key=functions.__getitem__)
    return {
        "modules": str(len(modules)),
        "module lines: median": f"{statistics.median(mod_sizes):.0f}",
        "module lines: p90": f"{_quantile(mod_sizes, 0.9):.0f}",
        "module lines: max": f"{mod_sizes[-1]} ({biggest_mod.removeprefix('govloop.')})",
        "functions": str(len(fn_sizes)),
        "function lines: median": f"{statistics.median(fn_sizes):.0f}",
        "function lines: p90": f"{_quantile(fn_sizes, 0.9):.0f}",
        "function lines: max": f"{fn_sizes[-1]} ({biggest_fn.removeprefix('govloop.')})",
        "import cycles between packages": str(_cycles(pkg_graph)),
        "import cycles between modules": str(_cycles(graph)),
        "function-level imports": str(sum(lazy.values())),
        "  of them in cli/": str(sum(n for m, n in lazy.items() if m.startswith("govloop.cli"))),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", help="a git revision (repeatable)")
    revs = parser.parse_args(argv).rev or [None]
    columns = [(rev or "working tree", measure(rev)) for rev in revs]
    rows = list(columns[0][1])
    width = max(len(r) for r in rows)
    widths = [max(len(title), *(len(v) for v in m.values())) for title, m in columns]
    print(
        f"| {'src/govloop'.ljust(width)} | "
        + " | ".join(t.ljust(w) for (t, _), w in zip(columns, widths, strict=True))
        + " |"
    )
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(
            f"| {r.ljust(width)} | "
            + " | ".join(m[r].ljust(w) for (_, m), w in zip(columns, widths, strict=True))
            + " |"
        )


if __name__ == "__main__":
    sys.exit(main())
