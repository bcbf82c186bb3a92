"""Set-based writes the ORM has no single statement for:

- `update_from_values`: a batch of rows updated with a value per row, in one
  `UPDATE … FROM (VALUES …)` that also checks a precondition on every row and says which rows it
  changed (`RETURNING`). The stages move a claimed batch with it: one statement for the batch
  instead of one per token, with the same compare-and-swap predicate (status, lease) the per-token
  UPDATE had.
- `insert_from_arrays`: many rows that differ in a few columns, in one
  `INSERT … SELECT … FROM unnest(…)` that says which rows it inserted. Ingestion creates each
  delivery's tokens and their history rows with it: one array per varying column instead of a
  model instance and a parameter per cell.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model
from django.db.models.functions import Now


@functools.cache
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
    statement per set of names (a batch usually has one). A field set to `Now()` in every row gets
    the database's clock."""
    quote = connection.ops.quote_name
    meta = model._meta
    pk_column, pk_cast, _ = _cell(model, meta.pk.name)
    table, pk_column = quote(meta.db_table), quote(pk_column)
    groups: dict[tuple[str, ...], list[Any]] = {}
    for pk, values in rows.items():
        groups.setdefault(tuple(sorted(values)), []).append(pk)
    changed: set[Any] = set()
    for all_names, pks in groups.items():
        # A field every row sets to `Now()` is the database's clock in the statement itself (one
        # clock for every machine's writes), not a value of this process's clock.
        clock = [n for n in all_names if all(isinstance(rows[pk][n], Now) for pk in pks)]
        if any(isinstance(rows[pk][n], Now) for pk in pks for n in all_names if n not in clock):
            raise ValueError("a field set to Now() must be Now() in every row of the batch")
        names = tuple(n for n in all_names if n not in clock)
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
        assignments = ", ".join(
            [f"{quote(column)} = v.{quote(column)}" for column, _, _ in cells]
            + [f"{quote(_cell(model, name)[0])} = STATEMENT_TIMESTAMP()" for name in clock]
        )
        values_sql, where_sql = ", ".join([row_sql] * len(pks)), " AND ".join(conditions)
        # Identifiers come from the model's metadata, quoted; every value is a parameter.
        source = f"(VALUES {values_sql}) AS v({columns})"
        sql = f"UPDATE {table} AS t SET {assignments} FROM {source} WHERE {where_sql}"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING t.{pk_column}", params)
            changed.update(row[0] for row in cursor.fetchall())
    return changed


def insert_from_arrays(
    model: type[Model],
    *,
    each: Mapping[str, Sequence[Any]],
    same: Mapping[str, Any] | None = None,
    skip_existing: bool = False,
) -> list[Any]:
    """Insert one row per position of the sequences in `each` (all of one length, one per field
    that differs between rows); every other column gets the same value for every row: `same`'s,
    else what a new instance would have (the field's default, `auto_now`'s time). Returns the
    primary keys of the rows inserted. `skip_existing`: a row that clashes with a stored one (its
    key, a unique constraint) is left out, not an error, and is not in the result."""
    rows = insert_from_arrays_returning(model, each=each, same=same, skip_existing=skip_existing)
    return [row[0] for row in rows]


def insert_from_arrays_returning(
    model: type[Model],
    *,
    each: Mapping[str, Sequence[Any]],
    same: Mapping[str, Any] | None = None,
    skip_existing: bool = False,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """`insert_from_arrays`, returning for each inserted row its primary key followed by the
    columns of the fields named in `returning`: what tells a caller which of its rows went in
    when the key is the database's (the database's order of RETURNING is not a promise)."""
    lengths = {len(values) for values in each.values()}
    assert len(lengths) == 1, "every field in `each` needs one value per row"
    if not lengths.pop():
        return []
    quote = connection.ops.quote_name
    meta = model._meta
    prototype = model(**(same or {}))
    columns, selected, params = [], [], []
    arrays, array_params = [], []
    for field in meta.concrete_fields:
        if field is meta.auto_field:
            continue  # the database numbers the row
        column, cast, _ = _cell(model, field.attname)
        columns.append(quote(column))
        values = each.get(field.attname, each.get(field.name))
        if values is None:
            selected.append(f"%s::{cast}")
            params.append(field.get_db_prep_save(field.pre_save(prototype, add=True), connection))
        else:
            selected.append(f"v.{quote(column)}")
            arrays.append((quote(column), f"%s::{cast}[]"))
            array_params.append(_prepared(field, values))
    returned = [str(meta.pk.column)] + [_cell(model, name)[0] for name in returning]
    unnest = ", ".join(cast for _, cast in arrays)
    names = ", ".join(name for name, _ in arrays)
    # Identifiers come from the model's metadata, quoted; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM unnest({unnest}) AS v({names})"
        + (" ON CONFLICT DO NOTHING" if skip_existing else "")
        + f" RETURNING {', '.join(quote(column) for column in returned)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params + array_params)
        return cursor.fetchall()


# Column types whose database value is the Python value itself when it has the column's type:
# such arrays skip the field's preparation one value at a time (`_prepared` writes their literal).
PLAIN_TYPES: dict[str, type] = {
    **dict.fromkeys(
        ("BigIntegerField", "IntegerField", "PositiveBigIntegerField", "PositiveIntegerField"), int
    ),
    **dict.fromkeys(("SmallIntegerField", "BigAutoField", "AutoField"), int),
    **dict.fromkeys(("CharField", "TextField"), str),
}


def _prepared(field: Field[Any, Any], values: Sequence[Any]) -> list[Any] | str:
    """The array parameter for `values` of `field`: for plain integers and texts, the array's
    literal written here at once (`{1,2}`, `{"a","b"}`), which the driver then quotes as one
    text; the driver's own array adaptation handles values one at a time in Python, and was the
    largest part of a delivery's CPU in the web worker. Anything else goes as a list."""
    target = getattr(field, "target_field", field)  # a foreign key: its key's type
    plain = PLAIN_TYPES.get(target.get_internal_type())
    if plain is int and all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    if plain is str and all(type(v) is str for v in values):
        return "{" + ",".join(map(_array_text, values)) + "}"
    return [field.get_db_prep_save(value, connection) for value in values]


def _array_text(value: str) -> str:
    """A text element of an array literal: quoted, its backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
