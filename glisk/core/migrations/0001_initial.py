"""SystemState moves here from chain: the table is adopted as it is (state only), then renamed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("chain", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SystemState",
                    fields=[
                        ("key", models.CharField(max_length=128, primary_key=True, serialize=False)),
                        ("value", models.JSONField(default=dict)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "verbose_name": "system state",
                        "verbose_name_plural": "system state",
                        "ordering": ["key"],
                        "db_table": "chain_systemstate",
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
