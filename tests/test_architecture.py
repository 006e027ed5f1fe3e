"""The file tree is the architecture: base < conv < lab < evidence < cli, no cycles, a light ``jaxconv.conv``."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jaxconv"

LAYERS = {"base": 0, "conv": 1, "lab": 2, "evidence": 3, "cli": 4}


def layer(module: str) -> str:
    """The layer of a ``jaxconv`` module (``jaxconv`` itself, the package root, is ``"root"``)."""
    parts = module.split(".")
    if parts == ["jaxconv"]:
        return "root"
    head = parts[1]
    if head in ("conv", "lab", "evidence"):
        return head
    if head == "theory":  # the public namespace of the lab's theory
        return "lab"
    if head in ("cli", "__main__"):
        return "cli"
    return "base"  # _checks, _files, _env


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Every ``jaxconv`` module that ``path`` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "jaxconv"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "jaxconv":
            base = node.module or ""
            for alias in node.names:  # `from jaxconv.lab import _fit` imports the module jaxconv.lab._fit
                candidate = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(candidate if is_module else base)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every import that goes up a layer, reaches the CLI or the package root, or closes a cycle."""
    out = []
    for source, targets in edges.items():
        for target in sorted(targets):
            s, t = layer(source), layer(target)
            if s == "root":
                if t not in ("conv", "lab"):
                    out.append(f"{source} -> {target}: the root re-exports conv and lab only")
            elif t == "root":
                out.append(f"{source} -> {target}: imports the package root (a hidden cycle)")
            elif t == "cli" and source != "jaxconv.__main__":
                out.append(f"{source} -> {target}: nothing imports the CLI")
            elif LAYERS[t] > LAYERS[s]:
                out.append(f"{source} -> {target}: {s} imports {t}, a layer above it")
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == node or nxt not in edges or layer(nxt) == "root":
                continue
            if state.get(nxt) == 1:
                out.append("cycle: " + " -> ".join(trail[trail.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state and layer(node) != "root":
            visit(node, [node])
    return out


def test_every_import_goes_down_and_there_are_no_cycles():
    edges = graph()
    assert {"jaxconv.conv._conv", "jaxconv.lab._fit", "jaxconv.evidence._bench", "jaxconv.cli"} <= set(edges)
    assert violations(edges) == []


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"jaxconv.conv._conv": {"jaxconv.lab._fit"}, "jaxconv.lab._fit": set()}, "conv imports lab"),
        ({"jaxconv.lab._fit": {"jaxconv.cli"}, "jaxconv.cli": set()}, "nothing imports the CLI"),
        ({"jaxconv.lab._checkpoint": {"jaxconv"}}, "package root"),
        ({"jaxconv.lab._a": {"jaxconv.lab._b"}, "jaxconv.lab._b": {"jaxconv.lab._a"}}, "cycle"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(edges, expected):
    found = violations(edges)
    assert len(found) == 1 and expected in found[0]


@pytest.mark.parametrize(
    "statement", ["import jaxconv.conv", "from jaxconv import conv2d", "from jaxconv import match_template"]
)
def test_the_convolution_loads_without_the_lab(statement):
    # Nor the image libraries match_template is tested against (the `images` extra).
    heavy = ("optax", "tqdm", "matplotlib", "jaxconv.lab", "skimage", "cv2", "scipy")
    code = f"import sys; {statement}; heavy = [m for m in {heavy!r} if m in sys.modules]; print(heavy)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
