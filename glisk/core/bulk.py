"""Set-based writes the ORM has no single statement for: a batch of rows updated with a value per
row, in one `UPDATE … FROM (VALUES …)` that also checks a precondition on every row and says which
rows it changed (`RETURNING`).

The stages move a claimed batch with these: one statement for the batch instead of one per token,
with the same compare-and-swap predicate (status, lease) the per-token UPDATE had.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def _cell(model: type[Model], name: str) -> tuple[str, str, Field[Any, Any]]:
    """(column, cast, field) for field `name`: every VALUES cell is cast to its column's type, so
    that PostgreSQL never has to guess the type of a literal (a NULL, a JSON text)."""
    field = model._meta.get_field(name)
    assert isinstance(field, Field), f"{name} is not a column of {model.__name__}"
    # Without a length (varchar, not varchar(500)): a cast to varchar(n) would cut a longer text
    # silently, where the assignment to the column refuses it, as the ORM's UPDATE does.
    cast = re.sub(r"\(\d+\)$", "", field.db_type(connection) or "text")
    return str(field.column), cast, field


def update_from_values(
    model: type[Model],
    rows: Mapping[Any, Mapping[str, Any]],
    *,
    where: Mapping[str, Any] | None = None,
) -> set[Any]:
    """Set, for each primary key in `rows`, that row's fields to its values, only where every
    `where` field equals its value (the precondition, checked in the same statement); returns the
    primary keys of the rows it changed. Rows whose dicts name different fields go in one
    statement per set of names (a batch usually has one)."""
    quote = connection.ops.quote_name
    meta = model._meta
    pk_column, pk_cast, _ = _cell(model, meta.pk.name)
    table, pk_column = quote(meta.db_table), quote(pk_column)
    groups: dict[tuple[str, ...], list[Any]] = {}
    for pk, values in rows.items():
        groups.setdefault(tuple(sorted(values)), []).append(pk)
    changed: set[Any] = set()
    for names, pks in groups.items():
        cells = [_cell(model, name) for name in names]
        row_sql = "(" + ", ".join([f"%s::{pk_cast}"] + [f"%s::{cast}" for _, cast, _ in cells]) + ")"
        params: list[Any] = []
        for pk in pks:
            params.append(pk)
            for (_, _, field), name in zip(cells, names, strict=True):
                params.append(field.get_db_prep_save(rows[pk][name], connection))
        params.append(list(pks))
        # The key list again, as an index condition on the table: the planner then reads just
        # these rows by primary key, whatever its statistics say of the `where` columns (stale
        # ones made it scan every row of a status for each batch).
        conditions = [f"t.{pk_column} = v.__key", f"t.{pk_column} = ANY(%s::{pk_cast}[])"]
        for name, value in (where or {}).items():
            if value is None:
                raise ValueError(f"where {name} is None: = NULL matches no row; not supported")
            column, _, field = _cell(model, name)
            conditions.append(f"t.{quote(column)} = %s")
            params.append(field.get_db_prep_save(value, connection))
        columns = ", ".join(["__key"] + [quote(column) for column, _, _ in cells])
        assignments = ", ".join(f"{quote(column)} = v.{quote(column)}" for column, _, _ in cells)
        values_sql, where_sql = ", ".join([row_sql] * len(pks)), " AND ".join(conditions)
        # Identifiers come from the model's metadata, quoted; every value is a parameter.
        source = f"(VALUES {values_sql}) AS v({columns})"
        sql = f"UPDATE {table} AS t SET {assignments} FROM {source} WHERE {where_sql}"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING t.{pk_column}", params)
            changed.update(row[0] for row in cursor.fetchall())
    return changed
