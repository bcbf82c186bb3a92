"""The models and their migrations agree, and the token author index migration runs on a live
table without rebuilding its foreign key."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.factories import AuthorFactory, TokenFactory


def test_every_model_change_has_its_migration(db):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def _author_indexes_and_foreign_key() -> tuple[set[str], int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes"
            " WHERE tablename = 'lifecycle_token' AND indexdef LIKE '%%(author_id%%'"
        )
        indexes = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT oid FROM pg_constraint WHERE conrelid = 'lifecycle_token'::regclass AND contype = 'f'"
            " AND conkey = ARRAY[(SELECT attnum FROM pg_attribute"
            " WHERE attrelid = 'lifecycle_token'::regclass AND attname = 'author_id')]"
        )
        return indexes, cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_author_index_migration_swaps_indexes_and_keeps_the_foreign_key():
    author = AuthorFactory.create()
    TokenFactory.create(token_id=1, author=author)
    executor = MigrationExecutor(connection)
    executor.migrate([("lifecycle", "0007_token_queue_order")])
    before, foreign_key = _author_indexes_and_foreign_key()
    assert before == {"lifecycle_token_author_id_dc5c836d"}
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([("lifecycle", "0008_token_author_index")])
    finally:
        call_command("migrate", verbosity=0)  # whatever happened, the schema the other tests use
    after, same_foreign_key = _author_indexes_and_foreign_key()
    assert after == {"token_author_idx"}
    # Neither dropped nor re-added (which would lock tokens and authors to check every row).
    assert same_foreign_key == foreign_key
