"""The import contract: each module of the package sits on a layer and imports only from layers
below it (or from its own package), so no import cycle can come back. Imports inside functions
count. docs/layout.md lists the same layers."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rqakit"

# Bottom to top. A module (or a subpackage, by its first name) may import only from lower layers.
LAYERS = (
    ("rqakit", "errors", "env", "types", "atomic", "progress", "stats", "nbstrip"),  # plain helpers
    ("config", "attempts"),                                          # the config tree; time over attempts
    ("runtime", "data", "runs", "evaluation"),                       # processes and precision; data; runs; metrics
    ("stage_folder",),                                               # what a finished stage folder holds, read
    ("models", "losses", "fusion", "artifacts"),                     # towers; the paper's losses; stage folders
    ("encode", "objectives", "training", "mining"),                  # inference; what stages optimise; the loop; lists
    ("rerank", "search"),                                            # re-ranking and retrieval
    ("stages", "ask"),                                               # baselines -> warmup -> augment -> joint; one question
    ("audit", "explore", "study"),                                   # what reads stages: audit, explorer, study
    ("walkthrough",),                                                # the walkthrough's steps (the audit's rule among them)
    ("report",),                                                     # tables, figures, report.md
    ("check",),                                                      # a fresh run against the committed report
    ("pipeline", "commands", "plan"),                                # reproduce over the notebooks; command bodies; plan
    ("cli",),                                                        # parses arguments, calls the above
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rqakit"


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known}
    return found - {module}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: imports(p, m, set(paths)) for m, p in paths.items()}


def test_every_module_has_a_layer():
    assert {group(m) for m in graph()} <= set(LAYER), sorted({group(m) for m in graph()} - set(LAYER))


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted((m, d) for m, deps in graph().items() for d in deps
                    if group(d) != group(m) and LAYER[group(d)] >= LAYER[group(m)])
    assert not upward, upward


def test_no_import_cycle_across_packages():
    g, state, cycles = graph(), {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(g[m]):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    # a package's __init__ re-exporting its modules that import each other is one package: cycles
    # across packages are what the layers forbid
    assert not [c for c in cycles if len({group(x) for x in c}) > 1], cycles
