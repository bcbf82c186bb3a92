"""The shared cache's table (Django's database cache): every process sees the same throttle counts."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("core", "0002_systemstate_table")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
