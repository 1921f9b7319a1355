"""No code of ours reaches into a dependency's private attributes: what a library keeps behind
a leading underscore may change in any release without notice, so the project uses only
what the library documents (Powertools' middlewares, exception handlers, `Response`, the
resolver's public methods; CDK's public constructs).

The rule, checked on `layers/common/python/avsev`, `tools/avsev_tools`, `functions/` and `infra/`: an access
`x._name` (a single leading underscore; dunders are Python's, not the library's) or a
subscript `x["_name"]` is refused when `x` comes from a third-party package, that is, when
the root name of `x` is

1. bound by an import of a module that is neither the project's (`avsev`, `infra`, a
   function's own modules, a relative import) nor the standard library's;
2. a variable assigned (anywhere in the module) from an expression whose root is such a
   name, e.g. `app = APIGatewayRestResolver()`, followed transitively;
3. a parameter annotated with such a type, e.g. `def f(app: APIGatewayRestResolver)`;
4. `self` or `cls` in a class deriving from such a type, for a name the class itself does
   not define (a method or an attribute assigned in its own body): the base class's
   private attribute.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = [
    ROOT / "layers" / "common" / "python" / "avsev",
    ROOT / "tools" / "avsev_tools",
    ROOT / "functions",
    ROOT / "infra",
]
PROJECT = {"avsev", "avsev_tools", "infra", "functions", "__future__"}


def sources() -> list[Path]:
    return sorted(p for folder in CHECKED for p in folder.rglob("*.py") if "cdk.out" not in p.parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _root(node: ast.AST) -> str | None:
    """The name an expression starts from: `a` for `a.b(c)[d].e`."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return None


def _bound(target: ast.expr) -> list[str]:
    """The variables an assignment target binds (`a`, `a, b`), not `a.b` or `a[0]`."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for t in target.elts for n in _bound(t)]
    if isinstance(target, ast.Starred):
        return _bound(target.value)
    return []


def _third_party(module: str, local: set[str]) -> bool:
    top = module.split(".")[0]
    return not (top in PROJECT or top in local or top in sys.stdlib_module_names)


class PrivateAccess(ast.NodeVisitor):
    """Finds the refused accesses of one module (see the module docstring)."""

    def __init__(self, tree: ast.Module, local: set[str]) -> None:
        self.tainted: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _third_party(alias.name, local):
                        self.tainted.add(alias.asname or alias.name.split(".")[0])
            elif (
                isinstance(node, ast.ImportFrom)
                and not node.level
                and node.module
                and _third_party(node.module, local)
            ):
                self.tainted.update(a.asname or a.name for a in node.names)
        self._follow_assignments(tree)
        self.found: list[tuple[int, str]] = []
        self.classes: list[tuple[bool, set[str]]] = []  # (derives from a third party, own names)

    def _follow_assignments(self, tree: ast.Module) -> None:
        """Rules 2 and 3: variables and parameters whose value comes from a tainted name."""
        changed = True
        while changed:
            changed = False
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                    value = node.value
                    root = _root(value) if value is not None else None
                    annotation = getattr(node, "annotation", None)
                    if root in self.tainted or (
                        annotation is not None and self._annotated_tainted(annotation)
                    ):
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        names = [n for t in targets for n in _bound(t)]
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    if _root(node.context_expr) in self.tainted:
                        names = _bound(node.optional_vars)
                elif (
                    isinstance(node, ast.arg)
                    and node.annotation is not None
                    and self._annotated_tainted(node.annotation)
                ):
                    names = [node.arg]
                for name in names:
                    if name not in self.tainted:
                        self.tainted.add(name)
                        changed = True

    def _annotated_tainted(self, annotation: ast.expr) -> bool:
        """Whether an annotation types the value as a tainted type: `T`, `T | None`,
        `Optional[T]`, `Annotated[T, ...]`, a generic `T[...]`, or the same in a string; a
        container of T (`list[T]`) is not a T."""
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return False
        if isinstance(annotation, ast.Name | ast.Attribute):
            return _root(annotation) in self.tainted
        if isinstance(annotation, ast.BinOp):
            return self._annotated_tainted(annotation.left) or self._annotated_tainted(
                annotation.right
            )
        if isinstance(annotation, ast.Subscript):
            base = annotation.value
            if _root(base) in self.tainted:
                return True
            args = (
                annotation.slice.elts
                if isinstance(annotation.slice, ast.Tuple)
                else [annotation.slice]
            )
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name == "Annotated":
                return self._annotated_tainted(args[0])
            if name in ("Optional", "Union"):
                return any(self._annotated_tainted(a) for a in args)
        return False

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        derived = any(_root(b) in self.tainted for b in node.bases)
        own: set[str] = set()
        for child in ast.walk(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                own.add(child.name)
            elif isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store):
                own.add(child.attr)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                own.add(child.id)
        self.classes.append((derived, own))
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _private(node.attr) and self._from_third_party(node.value, node.attr):
            self.found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        key = node.slice
        if (
            isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and _private(key.value)
            and self._from_third_party(node.value, key.value)
        ):
            self.found.append((node.lineno, f'{ast.unparse(node.value)}["{key.value}"]'))
        self.generic_visit(node)

    def _from_third_party(self, value: ast.expr, attr: str) -> bool:
        root = _root(value)
        if root in self.tainted:
            return True
        if root in ("self", "cls") and self.classes:
            derived, own = self.classes[-1]
            return derived and attr not in own
        return False


def private_accesses(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    local = {p.stem for p in path.parent.glob("*.py")} if "functions" in path.parts else set()
    visitor = PrivateAccess(tree, local)
    visitor.visit(tree)
    for line, text in visitor.found:
        yield f"{path.relative_to(ROOT)}:{line}: {text}"


def test_no_private_attribute_of_a_dependency_is_used():
    found = [hit for path in sources() for hit in private_accesses(path)]
    assert not found, "private attributes of third-party packages:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code, hits",
    [
        ("import boto3\nboto3._get_default_session()", ["boto3._get_default_session"]),
        ("from x import Resolver\napp = Resolver()\napp._routes", ["app._routes"]),
        (
            "from x import R\ndef f(app: R):\n    return app.context['_route']",
            ['app.context["_route"]'],
        ),
        ("from x import R\ndef f(app: 'R | None'):\n    return app._r", ["app._r"]),
        (
            "from x import Base\nclass Mine(Base):\n    def go(self):\n"
            "        self._mine = 1\n        return self._mine, self._base()",
            ["self._base"],
        ),
        # allowed: the project's own, the standard library's, dunders, plain variables
        ("from avsev import m\nm._helper()", []),
        ("import sys\nsys._getframe()", []),
        ("from x import R\nR.__name__\nclass A:\n    def f(self):\n        return self._a", []),
        (
            "from x import Body\nfrom typing import Annotated\ndef f(b: Annotated[int, Body()]):\n    b._x",
            [],
        ),
        ("from x import Model\ndef f(rows: list[Model]):\n    rows._x", []),
        ("from x import R\nfrom . import helper\nhelper._x", []),
    ],
)
def test_the_rule(tmp_path, code, hits):
    path = tmp_path / "mod.py"
    path.write_text(code)
    tree = ast.parse(code)
    visitor = PrivateAccess(tree, set())
    visitor.visit(tree)
    assert [text for _, text in visitor.found] == hits, path
