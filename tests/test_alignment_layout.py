"""divlab's layers, bottom to top, and the alignment code in them: every import runs down (or within a layer), there
is no import cycle, data imports no model, task or callback, and every alignment family shows its own training_step
(issues 17, 44)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "divlab"
FAMILIES = ("dpo.py", "ppo.py", "reward_model.py")

# Bottom to top: a module imports from its own layer and the layers below it, never from one above. A module belongs
# to the layer of the longest name here that is it or a package holding it.
LAYERS = (
    ("utilities", ("divlab", "divlab.atomic_files", "divlab.validation", "divlab.run_files", "divlab.checkpoints",
                   "divlab.config_dir", "divlab.config_tree", "divlab.deferred_signals", "divlab.eval_mode",
                   "divlab.resume_config", "divlab.cuda_availability")),
    ("data and models", ("divlab.datamodules", "divlab.lightning_modules", "divlab.divergence_choice")),
    ("evaluation", ("divlab.evaluation",)),
    ("tracking", ("divlab.tracking", "divlab.saved_runs")),
    ("callbacks", ("divlab.callbacks",)),
    ("alignment task and setup", ("divlab.alignment",)),
    ("cli", ("divlab.cli", "divlab.api", "divlab.__main__")),
)


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


def layer_of(module: str) -> int | None:
    """The index in LAYERS of `module`'s layer; None for a module no layer holds."""
    owners = [(len(name), index) for index, (_, names) in enumerate(LAYERS) for name in names
              if module == name or (name != "divlab" and module.startswith(name + "."))]
    return max(owners)[1] if owners else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer than its own, as 'module (layer) -> target (layer)'."""
    return [f"{module} ({LAYERS[layer_of(module)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
            for module, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(module)]


def test_every_divlab_module_has_a_layer():
    assert [module for module in import_graph() if layer_of(module) is None] == []


def test_every_import_runs_down_the_layers():
    assert upward_imports(import_graph()) == []
    # the check can see one: a planted upward import (a datamodule importing a callback) and a downward one
    planted = {"divlab.datamodules.text": {"divlab.callbacks.progress", "divlab.validation"},
               "divlab.callbacks.progress": set(), "divlab.validation": set()}
    assert upward_imports(planted) == ["divlab.datamodules.text (data and models) -> divlab.callbacks.progress "
                                       "(callbacks)"]


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
