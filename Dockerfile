# The application image. Model weights are mounted read-only at run time (MODEL_PATH), never
# baked in, and nothing is downloaded when the container starts.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLATFORM_PROFILE=production DATA_DIR=/var/lib/platform STATIC_ROOT=/app/staticfiles \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libldap2-dev libsasl2-dev gettext curl postgresql-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt && apt-get purge -y build-essential && apt-get autoremove -y

COPY . .
RUN find locale -name '*.po' -exec sh -c 'msgfmt --check -o "${1%.po}.mo" "$1"' _ {} \; \
 && scripts/build-static \
 && useradd --system --uid 10001 --home-dir /var/lib/platform platform \
 && mkdir -p /var/lib/platform && chown platform /var/lib/platform

USER platform
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# `manage.py serve` (uvicorn) believes no forwarded header itself: the app believes X-Forwarded-For
# only from TRUSTED_PROXIES (compose.yaml: the nginx container's address), and its system checks
# stop the start-up (here already at migrate) on an admin network that contains that address.
CMD ["sh", "-c", "python manage.py migrate --noinput && exec python manage.py serve --host 0.0.0.0 --port 8000"]
