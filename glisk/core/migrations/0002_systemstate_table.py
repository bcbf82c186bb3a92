from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial"), ("chain", "0002_systemstate_moved_to_core")]

    operations = [migrations.AlterModelTable(name="systemstate", table=None)]
