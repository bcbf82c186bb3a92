"""SystemState now belongs to glisk.core; the table stays (core adopts it), only the state moves."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chain", "0001_initial"), ("core", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="SystemState")],
            database_operations=[],
        ),
    ]
