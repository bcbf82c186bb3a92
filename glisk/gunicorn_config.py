"""gunicorn's settings for the container image (`gunicorn -c python:glisk.gunicorn_config`).

The web app's own log format on stdout for gunicorn's messages and its access log (JSON in
production), and the worker model the stack uses: threads, since requests mostly wait on
PostgreSQL. WEB_CONCURRENCY and WEB_THREADS size it; PORT moves it.
"""

from __future__ import annotations

import os

from glisk.logging import gunicorn_logging_config

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
# The frontend polls every 2 s over one connection; gunicorn's default keep-alive is also 2 s,
# so idle connections closed just as the next poll was sent and the poll failed with a reset.
keepalive = 5
graceful_timeout = 20
control_socket_disable = True  # runtime control is not used; the app's directory is read-only
accesslog = "-"
errorlog = "-"
logconfig_dict = gunicorn_logging_config(
    level=os.environ.get("LOG_LEVEL", "INFO").upper(),
    json_output=os.environ.get("APP_ENV", "development") == "production",
)
