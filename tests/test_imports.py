"""The package's import graph has no cycles, lazy (function-level) imports included."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "seemore_sr"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports anywhere in its body (``from . import x`` of a
    submodule counts as that submodule; of a name, as the package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("seemore_sr")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("seemore_sr"):
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists() else mod)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in mods} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    g = graph()
    assert "seemore_sr.inference.batch" in g and g["seemore_sr.inference.batch"]  # the walker reads imports
    # the package's __init__ re-exports lazily from its submodules, which import it back for
    # names such as __version__: that star is not a cycle of the code's layers
    g = {m: {i for i in deps if i != "seemore_sr"} for m, deps in g.items()}
    assert cycles(g) == []
