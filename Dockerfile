# One image for the API and every actor; docker-compose.yml picks the command.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont libsndfile1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY actors actors
COPY contracts contracts
COPY storage storage
COPY infra infra
COPY cli cli
RUN pip install --no-cache-dir .
ENV TUNEFORGE_DATA_DIR=/data NUMBA_CACHE_DIR=/data/numba-cache
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["tuneforge"]
