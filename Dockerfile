# The lambda-search image: the package, its pinned dependencies, the study files.
# Built by docker-compose.yml for the workers and the dashboard.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LAMBDA_SEARCH_CACHE=/artifacts/cache

WORKDIR /app
# Dependencies first, in their own layer, so a code change does not reinstall torch:
# pyproject.toml's dependency list, pinned by constraints.txt, installed without the package.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY lambda_search ./lambda_search
RUN pip install --no-deps .
COPY studies/*.toml ./studies/

RUN useradd --create-home --uid 1000 lambda \
    && mkdir -p /artifacts \
    && chown lambda:lambda /artifacts
USER lambda

CMD ["lambda-search", "--help"]
