# The GLISK backend image: the web app (gunicorn) and the qcluster workers run from it.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    APP_ENV=production \
    GLISK_VAR_DIR=/app/var

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app glisk \
    && mkdir -p /app/var \
    && chown -R glisk:glisk /app/var

USER glisk
EXPOSE 8000

# collectstatic needs settings but no secrets: run it with throwaway values at build time.
RUN APP_ENV=development DATABASE_URL=postgresql://build@localhost/none \
    python manage.py collectstatic --no-input --verbosity 0

CMD ["gunicorn", "glisk.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
