"""The house rules the code keeps (issue 14): no import cycle among fairl_ray's modules, and no module importing
another module's private (``_x``) name. Both read the source with ``ast`` (function-level imports included, imports
under ``if TYPE_CHECKING:`` left out: they never run), so a new violation fails here, naming the modules."""

import ast
from pathlib import Path

import fairl_ray

PACKAGE = Path(fairl_ray.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(mods: dict[str, Path]):
    """``{module: {imported fairl_ray modules}}`` and the private names imported, as (importer, module, name)."""
    edges, private = {}, []
    for mod, path in mods.items():
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.split(".")[0] == "fairl_ray")
            elif isinstance(node, ast.ImportFrom):
                target = node.module
                if node.level:  # relative: from the importer's package
                    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                if not target or target.split(".")[0] != "fairl_ray":
                    continue
                for alias in node.names:
                    if f"{target}.{alias.name}" in mods:
                        deps.add(f"{target}.{alias.name}")
                    else:
                        deps.add(target)
                        if alias.name.startswith("_"):
                            private.append((mod, target, alias.name))
        edges[mod] = {d for d in deps if d in mods and d != mod}
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _private_attributes(mods: dict[str, Path]) -> list[tuple[str, str]]:
    """``module._name`` on a fairl_ray module imported as a name (``from fairl_ray.x import y``; ``y._z``)."""
    found = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fairl_ray":
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in mods:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "fairl_ray" and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append((mod, f"{aliases[node.value.id]}.{node.attr}"))
    return found


def test_the_checker_sees_what_it_checks():
    """The checker itself: fairl_ray's modules are found and their imports read (a checker that reads nothing
    would pass everything)."""
    mods = _modules()
    edges, _ = _imports(mods)
    assert "fairl_ray.orchestration.pipeline" in mods and "fairl_ray.cli" in mods
    assert "fairl_ray.config.loading" in edges["fairl_ray.config.pipeline"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_fairl_ray_modules():
    cycles = _cycles(_imports(_modules())[0])
    assert not cycles, f"import cycles: {cycles}"


#: Modules every package may import without making their packages depend on each other: leaves (they import no
#: other fairl_ray module but each other; checked below), counted as packages of their own.
SHARED_LEAVES = ("fairl_ray.config.loading", "fairl_ray.config_error")


def _package(module: str) -> str:
    """The subpackage a module belongs to (``fairl_ray.stages`` for ``fairl_ray.stages.rlhf``); top-level modules and
    the shared leaves stand for themselves."""
    return module if module in SHARED_LEAVES else ".".join(module.split(".")[:2])


def test_no_import_cycle_among_fairl_ray_packages():
    """No two subpackages import each other (issue 14 found ``config/`` ⇄ ``stages/``), however indirectly."""
    edges = _imports(_modules())[0]
    for leaf in SHARED_LEAVES:
        others = edges[leaf] - set(SHARED_LEAVES)
        assert not others, f"{leaf} is counted as a shared leaf but imports {sorted(others)}"
    packages: dict[str, set[str]] = {}
    for module, deps in edges.items():
        packages.setdefault(_package(module), set()).update(
            _package(d) for d in deps if _package(d) != _package(module)
        )
    cycles = _cycles(packages)
    assert not cycles, f"package import cycles: {cycles}"


def test_no_module_imports_another_modules_private_name():
    mods = _modules()
    private = _imports(mods)[1]
    assert not private, f"private names imported across modules (importer, module, name): {private}"
    attributes = _private_attributes(mods)
    assert not attributes, f"private attributes of other modules used: {attributes}"
