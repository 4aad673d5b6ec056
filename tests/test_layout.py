"""The architecture holds: the read side imports no torch, and Optuna is the version the adapter was written for."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from lambda_search.sweep.storage import SUPPORTED_OPTUNA

READ_SIDE = ("lambda_search.results.report, lambda_search.results.export, lambda_search.results.compare, "
             "lambda_search.records.trials, lambda_search.records.confirmation, lambda_search.records.export")


def test_the_read_side_imports_no_torch():
    # A fresh interpreter: this test process has long imported torch.
    code = f"import sys, {READ_SIDE}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_status_report_and_export_run_without_torch(finished_study, tmp_path):
    commands = [["status", "--storage", finished_study, "--study", "tiny"],
                ["report", "--storage", finished_study, "--study", "tiny", "-o", str(tmp_path / "report.html")],
                ["export", "--storage", finished_study, "--study", "tiny", "-o", str(tmp_path / "best.yaml")]]
    code = ("import sys; from lambda_search.cli import main; "
            f"codes = [main(command) for command in {commands!r}]; "
            "assert codes == [0, 0, 0], codes; assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "best.yaml").stat().st_size > 0


def test_the_installed_optuna_is_one_the_storage_adapter_was_written_for():
    version = tuple(int(part) for part in metadata.version("optuna").split(".")[:2])
    low, high = SUPPORTED_OPTUNA
    assert low <= version < high, f"optuna {version} is outside {low} … {high}: check sweep/storage/access.py"


def _is_attrs(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr.endswith("attrs")  # user_attrs, system_attrs


def _attr_key(node: ast.AST) -> ast.AST | None:
    """The key of ``user_attrs["k"]``, ``user_attrs.get("k")``, ``set_user_attr("k", …)``,
    ``set_trial_user_attr(id, "k", …)`` or ``"k" in user_attrs``; None for any other node."""
    if isinstance(node, ast.Subscript) and _is_attrs(node.value):
        return node.slice
    if isinstance(node, ast.Compare) and _is_attrs(node.comparators[0]):
        return node.left
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
        return None
    name = node.func.attr
    if (name == "get" and _is_attrs(node.func.value)) or name in ("set_user_attr", "set_system_attr"):
        return node.args[0]
    if name in ("set_trial_user_attr", "set_trial_system_attr") and len(node.args) > 1:
        return node.args[1]
    return None


def _attr_key_literals(tree: ast.AST) -> list[str]:
    keys = (_attr_key(node) for node in ast.walk(tree))
    return [f"{key.value!r} (line {key.lineno})" for key in keys
            if isinstance(key, ast.Constant) and isinstance(key.value, str)]


def test_stored_attr_keys_are_named_only_in_records_keys():
    package = Path(__file__).parents[1] / "lambda_search"
    spelled = {str(path.relative_to(package)): literals for path in sorted(package.rglob("*.py"))
               if (literals := _attr_key_literals(ast.parse(path.read_text(encoding="utf-8"))))}
    assert spelled == {}, f"use records.keys (or names) for these stored attr keys: {spelled}"


# Optuna's private attributes of a study or trial, read only by the storage adapter (sweep/storage/access.py).
OPTUNA_PRIVATE_ATTRIBUTES = {"_storage", "_study_id", "_trial_id", "_backend", "_cached_frozen_trial"}


def _optuna_privates(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna") \
                and any(part.startswith("_") for part in node.module.split(".")):
            found.append(f"from {node.module} (line {node.lineno})")
        elif isinstance(node, ast.Attribute) and node.attr in OPTUNA_PRIVATE_ATTRIBUTES \
                and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.append(f".{node.attr} (line {node.lineno})")
    return found


def test_optunas_private_api_is_used_only_in_the_storage_adapter():
    package = Path(__file__).parents[1] / "lambda_search"
    adapter = package / "sweep" / "storage"
    used = {str(path.relative_to(package)): privates for path in sorted(package.rglob("*.py"))
            if adapter not in path.parents
            and (privates := _optuna_privates(ast.parse(path.read_text(encoding="utf-8"))))}
    assert used == {}, f"Optuna's private API outside sweep/storage/: {used}"


def test_every_module_is_on_the_design_notes_map():
    """docs/design.md's module map names every module of the package, so a new one is placed on purpose."""
    text = (Path(__file__).parents[1] / "docs" / "design.md").read_text(encoding="utf-8")
    start = text.index("```\nlambda_search/")
    mapped = set(re.findall(r"[\w]+", text[start:text.index("```", start + 3)]))
    package = Path(__file__).parents[1] / "lambda_search"
    modules = {path.stem for path in package.rglob("*.py")} - {"__init__", "__main__"}
    assert sorted(modules - mapped) == []


def test_no_module_passes_400_lines():
    """A module past 400 lines holds more than one concern: split it by concern, as storage/ and race/ are."""
    package = Path(__file__).parents[1] / "lambda_search"
    sizes = {str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
             for path in package.rglob("*.py")}
    assert {path: size for path, size in sizes.items() if size > 400} == {}
