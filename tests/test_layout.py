"""The layout of issue 13 item 1: argparse and the commands live in ``judge_rl/commands`` and
``judge_rl/cli.py`` only; library packages hold no ``cli.py`` / ``cli_options.py`` and never import
a command module (a stage is a library function that commands call, not the other way round)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "judge_rl"
# A runnable test/benchmark endpoint (`python -m judge_rl.backends._fakeserver`): its own main.
TOOLS = {"backends/_fakeserver.py"}


def _library_modules() -> list[Path]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel == "cli.py" or rel.startswith("commands/") or rel in TOOLS:
            continue
        out.append(path)
    return out


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_library_packages_hold_no_cli_modules():
    found = [
        p.relative_to(PKG).as_posix()
        for p in PKG.rglob("cli*.py")
        if p.relative_to(PKG).as_posix() != "cli.py"
    ]
    assert found == [], f"CLI modules inside library packages: {found} (move them to commands/)"


def test_library_modules_import_neither_argparse_nor_commands():
    bad = {}
    for path in _library_modules():
        hits = sorted(
            n for n in _imports(path) if n == "argparse" or n.startswith("judge_rl.commands")
        )
        if hits:
            bad[path.relative_to(PKG).as_posix()] = hits
    assert bad == {}, f"library modules importing argparse or a command: {bad}"
