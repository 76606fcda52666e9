"""The alignment code keeps the project's layout: no import cycle, data imports no model, task or callback,
and every alignment family shows its own training_step (issue 17)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "divlab"
FAMILIES = ("dpo.py", "ppo.py", "reward_model.py")


def import_graph() -> dict[str, set[str]]:
    """divlab module → the divlab modules it imports, at module level or inside functions."""
    modules = {".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): f
               for f in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("divlab"):
                imported |= {owner(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {owner(alias.name) for alias in node.names if alias.name.startswith("divlab")}
        graph[name] = imported - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_divlab_has_no_import_cycle():
    assert cycles(import_graph()) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check can see one


def test_datamodules_import_no_model_task_or_callback():
    forbidden = ("divlab.lightning_modules", "divlab.alignment", "divlab.callbacks")
    wrong = {(module, target) for module, targets in import_graph().items()
             if module.startswith("divlab.datamodules") for target in targets if target.startswith(forbidden)}
    assert wrong == set()


def test_every_alignment_family_shows_its_training_step():
    for name in FAMILIES:
        tree = ast.parse((PACKAGE / "lightning_modules" / name).read_text())
        methods = {node.name for cls in tree.body if isinstance(cls, ast.ClassDef) for node in cls.body
                   if isinstance(node, ast.FunctionDef)}
        assert {"training_step", "validation_step", "configure_optimizers"} <= methods, name
