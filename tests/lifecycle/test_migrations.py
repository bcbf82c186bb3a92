"""The models and their migrations agree, and the token author index migration runs on a live
table without rebuilding its foreign key."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("left_behind", ["a failed build", "the new index, the old one not dropped"])
def test_the_author_index_migration_runs_again_after_an_interrupted_run(left_behind):
    """Outside a transaction an interrupted run leaves its work: running it again finishes."""
    author = AuthorFactory.create()
    TokenFactory.create(token_id=1, author=author)
    TokenFactory.create(token_id=2, author=author)
    MigrationExecutor(connection).migrate([("lifecycle", "0007_token_queue_order")])
    try:
        with connection.cursor() as cursor:
            if left_behind == "a failed build":
                # A CONCURRENTLY build that fails (here: two tokens of one author break a unique
                # one; in production a timeout or a killed session) leaves its index INVALID.
                with pytest.raises(IntegrityError):
                    cursor.execute(
                        'CREATE UNIQUE INDEX CONCURRENTLY "token_author_idx"'
                        ' ON "lifecycle_token" ("author_id")'
                    )
            else:
                cursor.execute(
                    'CREATE INDEX CONCURRENTLY "token_author_idx"'
                    ' ON "lifecycle_token" ("author_id", "token_id")'
                )
        MigrationExecutor(connection).migrate([("lifecycle", "0008_token_author_index")])
    finally:
        call_command("migrate", verbosity=0)
    assert _author_indexes_and_foreign_key()[0] == {"token_author_idx"}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indexrelid = to_regclass('token_author_idx')"
        )
        valid, definition = cursor.fetchone()
    assert valid and definition.endswith("(author_id, token_id)") and "UNIQUE" not in definition
