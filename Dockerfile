# CPU image: the API and every worker queue (GPU queues run here too, slowly; see Dockerfile.cuda).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY taskservice taskservice
COPY workflows workflows
COPY activities activities
COPY api api
COPY workers workers
RUN pip install --no-cache-dir '.[ml]'
RUN useradd --uid 10001 --create-home app && mkdir -p /models /app/data && chown app /models /app/data
USER app
ENV PYTHONUNBUFFERED=1 HF_HOME=/models
EXPOSE 8001
CMD ["python", "-m", "api"]
