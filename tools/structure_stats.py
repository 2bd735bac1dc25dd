"""Print the code layout's structure numbers as JSON (issue 26: measure the structure before and after a move).

    python tools/structure_stats.py [REPO_ROOT]

- ``root_py_files``: .py files directly in ``src/prefrestore/`` (``__init__``/``__main__`` included);
- ``packages`` / ``modules``: packages (folders with ``__init__.py``, the root included) and modules (every .py file,
  ``__init__.py`` counted as its package's module);
- ``import_edges``: distinct (importer -> imported) pairs of prefrestore modules, read with ``ast`` from every
  ``import``/``from`` statement anywhere in a file (function-level and ``TYPE_CHECKING`` imports included), relative
  imports resolved; ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``;
- ``layers``: entries in each import-linter ``layers`` contract (pyproject.toml), by contract id, and their total;
- ``modules_outside_layers``: modules no ``layers`` contract places (a module is placed when it is, or sits inside,
  an entry of a contract's layers under one of its containers);
- ``duplicate_basenames``: file names (``__init__``/``__main__`` excepted) used by more than one module;
- ``readme_lines`` / ``readme_words``: the README's length.

Standard library only; reads the tree, imports nothing from it.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import Counter
from pathlib import Path

import tomllib

PACKAGE = "prefrestore"


def module_names(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``src/prefrestore``."""
    names = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module a ``from`` statement names (its ``level`` resolved against module ``name``)."""
    if node.level == 0:
        return node.module or ""
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(names: dict[str, Path]) -> set[tuple[str, str]]:
    """Distinct (importer, imported) pairs of prefrestore modules, self-imports left out."""
    edges = set()
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, is_package)
                for alias in node.names:
                    full = f"{base}.{alias.name}" if base else alias.name
                    targets.append(full if full in names else base)
            for target in targets:
                # `import prefrestore.a.b` or a name inside a module: walk up to the nearest known module
                while target and target not in names:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] == PACKAGE:
                    edges.add((name, target))
    return edges


def layers_contracts(pyproject: Path) -> list[dict]:
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    return [c for c in contracts if c.get("type") == "layers"]


def placed(module: str, contracts: list[dict]) -> bool:
    for contract in contracts:
        for container in contract.get("containers", []):
            for layer in contract["layers"]:
                for entry in layer.split("|"):
                    full = f"{container}.{entry.strip()}"
                    if module == full or module.startswith(full + "."):
                        return True
    return False


def stats(root: Path) -> dict:
    src = root / "src"
    names = module_names(src)
    edges = import_edges(names)
    contracts = layers_contracts(root / "pyproject.toml")
    basenames = Counter(p.stem for p in names.values() if p.stem not in ("__init__", "__main__"))
    readme = (root / "README.md").read_text(encoding="utf-8")
    return {
        "root_py_files": len(list((src / PACKAGE).glob("*.py"))),
        "packages": sum(1 for p in names.values() if p.name == "__init__.py"),
        "modules": len(names),
        "import_edges": len(edges),
        "layers": {c.get("id", c.get("name", "?")): len(c["layers"]) for c in contracts},
        "layers_total": sum(len(c["layers"]) for c in contracts),
        "modules_outside_layers": sorted(m for m in names if m != PACKAGE and not placed(m, contracts)),
        "duplicate_basenames": sorted(b for b, n in basenames.items() if n > 1),
        "readme_lines": len(readme.splitlines()),
        "readme_words": len(readme.split()),
    }


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    print(json.dumps(stats(root), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
