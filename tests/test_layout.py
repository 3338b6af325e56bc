"""The layout's rules, checked on the source: no import cycle, no import hidden in a function, printing only
in cli/ (and the progress display), SQL only in store/.

These read the code with `ast`, so a rule broken anywhere fails here with the file and line.
"""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "publisher"
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(PACKAGE.rglob("*.py"))}
PRINTS_ALLOWED = ("publisher.cli", "publisher.progress")
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|WITH RECURSIVE)\b.*\b(FROM|INTO|SET|TABLE|INDEX|\w+\s*=|SELECT)\b",
                 re.IGNORECASE | re.DOTALL)


def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))


def imported(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The publisher modules an import statement of module `name` loads (a package's name for its __init__)."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            package = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [t for t in targets if t in MODULES]


def where(name: str, node: ast.AST) -> str:
    return f"{MODULES[name].relative_to(PACKAGE.parent)}:{node.lineno}"


def test_no_publisher_import_inside_a_function():
    found = []
    for name in MODULES:
        for fn in ast.walk(tree(name)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [where(name, n) for n in ast.walk(fn)
                          if isinstance(n, (ast.Import, ast.ImportFrom)) and imported(name, n)]
    assert found == [], "publisher modules imported inside functions (hiding a cycle or redundant): " + ", ".join(found)


def cycles_in(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk of `graph` meets, as "a -> b -> a"."""
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycle():
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        for n in ast.walk(tree(name)):  # TYPE_CHECKING imports count: a cycle for the type checker is one for the reader
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                graph[name].update(t for t in imported(name, n) if t != name)
    cycles = cycles_in(graph)
    assert cycles == [], "import cycles: " + "; ".join(cycles)


def test_only_the_cli_and_the_progress_display_print():
    found = [where(name, n) for name in MODULES if not name.startswith(PRINTS_ALLOWED)
             for n in ast.walk(tree(name))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]
    assert found == [], "print outside cli/: " + ", ".join(found)


def test_sql_only_in_the_store():
    found = []
    for name in MODULES:
        if name.startswith("publisher.store"):
            continue
        for n in ast.walk(tree(name)):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and SQL.match(n.value):
                found.append(where(name, n))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("execute", "executemany", "executescript"):
                found.append(where(name, n))
    assert found == [], "SQL outside store/: " + ", ".join(found)


def test_the_rules_see_what_they_forbid(tmp_path):
    # the checks above would pass on nothing at all: prove each one recognises its offence
    code = ast.parse("def f():\n    from publisher.store import db\n    print(1)\n    c.execute('SELECT 1 FROM t')\n")
    fn = code.body[0]
    assert any(isinstance(n, ast.ImportFrom) and imported("publisher.app", n) for n in ast.walk(fn))
    assert any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print" for n in ast.walk(fn))
    assert SQL.match("SELECT 1 FROM t") and SQL.match("INSERT INTO x VALUES (?)") and SQL.match("UPDATE runs SET a=?")
    assert not SQL.match("select the campaigns to send") and not SQL.match("Update your settings")
    assert imported("publisher.pipeline", ast.parse("from publisher.app import Context").body[0]) == ["publisher.app"]
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a -> b -> c -> a"]
