"""What import-linter cannot see: chain must not reach lifecycle's models through a re-export
(`from lifecycle.services.tokens import Token`) or through a reverse relation
(`reveal_transaction.tokens.update(…)`). Tokens change only through lifecycle's services."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from django.db import models

ROOT = Path(__file__).resolve().parents[1]
# Reverse relations from lifecycle's models onto chain's (Token.mint_event, Token.reveal_transaction).
REVERSE_RELATIONS = {"tokens"}


def chain_modules():
    for path in sorted((ROOT / "chain").rglob("*.py")):
        if "migrations" not in path.parts:
            yield path, ast.parse(path.read_text(), filename=str(path))


def lifecycle_models_imported(tree: ast.AST) -> list[str]:
    """Names bound to lifecycle's model classes by `from lifecycle… import …`, wherever from."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lifecycle"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if isinstance(value, type) and issubclass(value, models.Model):
                    found.append(f"{alias.name} from {node.module}")
    return found


def test_chain_binds_no_lifecycle_model():
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, tree in chain_modules()
        for name in lifecycle_models_imported(tree)
    ]
    assert found == []


def test_chain_uses_no_reverse_relation_onto_lifecycle():
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}"
        for path, tree in chain_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in REVERSE_RELATIONS
    ]
    assert found == []


def test_the_check_sees_a_model_through_a_re_export():
    tree = ast.parse("from lifecycle.services.tokens import Token, token_fail\n")
    assert lifecycle_models_imported(tree) == ["Token from lifecycle.services.tokens"]
