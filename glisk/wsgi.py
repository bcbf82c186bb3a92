"""The WSGI application, as gunicorn (or any WSGI server) loads it in each web worker."""

import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glisk.settings")

application = get_wsgi_application()

# Everything loaded so far (Django, the apps, every view through the URLconf) lives as long as the
# worker. Frozen, the cyclic garbage collector no longer walks it on each full collection: under
# the frontend's polling those collections paused a worker for 70–290 ms a few times a minute,
# which was the read API's whole p99 (bench/read_api.py: p99 246 ms before, 17 ms after, at
# 500 requests/s).
import_module(settings.ROOT_URLCONF)
gc.collect()
gc.freeze()
