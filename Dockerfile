# One image for every part: `jobtask serve jobs|tasks|gateway`, `jobtask worker`, `jobtask up`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY services ./services
COPY clients/python ./clients/python
RUN pip install . && useradd --create-home --uid 10001 jobtask
COPY examples/crunch_scripts /srv/crunch_scripts

USER jobtask
WORKDIR /home/jobtask
ENV JOBTASK_SCRIPTS_DIR=/srv/crunch_scripts
EXPOSE 50051 50052 8000
CMD ["jobtask", "up"]
