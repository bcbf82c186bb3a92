# The GLISK backend image: the web app (gunicorn), the qcluster workers and the one-shot
# `migrate` run from it. Dependencies are a layer of their own, rebuilt only when a pin changes;
# the image needs no network when it runs, runs as an unprivileged user and serves its own static
# files (whitenoise).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    GLISK_VAR_DIR=/app/var \
    PYTHONPATH=/app

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin glisk

COPY manage.py ./
COPY glisk glisk
COPY authors authors
COPY lifecycle lifecycle
COPY chain chain
COPY templates templates
RUN mkdir -p /app/var && chown glisk:glisk /app/var

# collectstatic needs settings but no secrets: throwaway values, at build time, as the app's user.
USER glisk
RUN APP_ENV=development STATIC_MANIFEST=1 DATABASE_URL=postgresql://build@localhost/none \
    python manage.py collectstatic --no-input --verbosity 0

EXPOSE 8000
CMD ["gunicorn", "-c", "python:glisk.gunicorn_config", "glisk.wsgi:application"]
