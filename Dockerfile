# The engine's image: the `recsys` command line and the API.
FROM python:3.11-slim

# LightFM (rectools-lightfm) compiles a C extension at install time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY recsys ./recsys
COPY training ./training
COPY serving ./serving
COPY experiments ./experiments
RUN pip install --no-cache-dir .

ENV RECSYS_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000"]
