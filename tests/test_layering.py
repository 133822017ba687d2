"""The rule of the house (docs/design.md): ``distrl/runtime/``, flows included, names no
algorithm, and the run's counters are assigned in one module. Both are read from the code's
syntax tree: comments and docstrings may name PPO; code may not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from distrl.algos import ALGORITHMS

RUNTIME = Path(__file__).resolve().parent.parent / "distrl" / "runtime"
COUNTERS_MODULE = RUNTIME / "tally.py"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (the first statement of a module,
    class or function), which may name anything."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def algorithm_names_in(source: str) -> list[tuple[int, str]]:
    """(line, word) for every identifier, attribute, import or non-docstring string in
    ``source`` that holds an algorithm's registered name as a word of its own (``dqn``,
    ``ppo_clip``, ``"impala"``; not ``pgroup``)."""
    names = {name.lower() for name in ALGORITHMS}
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Name):
            texts = [node.id]
        elif isinstance(node, ast.Attribute):
            texts = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts = [node.name]
        elif isinstance(node, ast.arg):
            texts = [node.arg]
        elif isinstance(node, ast.alias):
            texts = [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            texts = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            texts = [node.value]
        for text in texts:
            for word in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()):
                if word in names:
                    found.append((getattr(node, "lineno", 0), word))
    return found


def counter_assignments_in(source: str) -> list[int]:
    """Lines that assign an attribute of something named ``counters`` (``x.counters.n += 1``,
    ``counters.n = 0``) or call ``setattr`` on it."""
    tree = ast.parse(source)
    lines = []

    def on_counters(target: ast.AST) -> bool:
        if not isinstance(target, ast.Attribute):
            return False
        owner = target.value
        return (isinstance(owner, ast.Name) and owner.id == "counters") or (
            isinstance(owner, ast.Attribute) and owner.attr == "counters"
        )

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(on_counters(target) for target in targets):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Attribute) and first.attr == "counters":
                lines.append(node.lineno)
            if isinstance(first, ast.Name) and first.id == "counters":
                lines.append(node.lineno)
    return lines


def runtime_files() -> list[Path]:
    files = sorted(RUNTIME.rglob("*.py"))
    assert any(path.parent.name == "flows" for path in files), "flows/ is part of the runtime"
    return files


def test_the_checks_catch_what_they_are_for():
    """Both checks on code that breaks the rule, and on text that only mentions it."""
    breaks = 'if config.algo == "ppo":\n    run_dqn_loop()\nfrom distrl.algos.impala import X\n'
    assert sorted(word for _, word in algorithm_names_in(breaks)) == ["dqn", "impala", "ppo"]
    mentions = '"""A flow for PPO and A3C."""\n# DQN\nplacement_pgroup = 1\n'
    assert algorithm_names_in(mentions) == []
    assert counter_assignments_in("self.tally.counters.env_steps += 1\ncounters.x = 0\ny = counters.x\n") == [1, 2]
    assert counter_assignments_in("setattr(self.counters, name, 3)\n") == [1]


@pytest.mark.parametrize("path", runtime_files(), ids=lambda path: str(path.relative_to(RUNTIME)))
def test_the_runtime_names_no_algorithm(path):
    assert algorithm_names_in(path.read_text()) == [], f"{path} names an algorithm"


def test_counters_are_assigned_in_one_module():
    package = RUNTIME.parent
    assigning = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if (lines := counter_assignments_in(path.read_text()))
    }
    assert set(assigning) == {str(COUNTERS_MODULE.relative_to(package))}, assigning


def attributes_created_outside_init(source: str) -> list[str]:
    """``Class.attr`` for each ``self.attr = ...`` in a method other than ``__init__`` whose
    class neither sets it in ``__init__`` nor declares it in its body (a dataclass field)."""
    found = []
    for cls in (node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)):
        declared = {
            node.target.id for node in cls.body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        } | {
            target.id
            for node in cls.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assigned: dict[str, set[str]] = {}
        for method in (node for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(method):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = [t for target in node.targets for t in ast.walk(target)]
                elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                    targets = [node.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        assigned.setdefault(method.name, set()).add(target.attr)
        in_init = assigned.get("__init__", set()) | declared
        for method, names in assigned.items():
            found += [f"{cls.name}.{name} (in {method})" for name in sorted(names - in_init)]
    return found


# The driver's side of the runtime: its objects hold their whole state from construction on.
# (The actors build theirs in setup(), once the env's spaces are known.)
DRIVER_MODULES = ("trainer.py", "learner_handle.py", "worker_pool.py", "tally.py", "phases.py", "flows")


def test_the_check_for_late_attributes_catches_one():
    late = "class A:\n    def __init__(self):\n        self.a = 1\n    def go(self):\n        self.a, self.b = 2, 3\n"
    assert attributes_created_outside_init(late) == ["A.b (in go)"]


def test_driver_objects_create_every_attribute_in_init():
    files = [path for path in runtime_files() if path.name in DRIVER_MODULES or path.parent.name == "flows"]
    late = {
        str(path.relative_to(RUNTIME)): found
        for path in files
        if (found := attributes_created_outside_init(path.read_text()))
    }
    assert not late, late
