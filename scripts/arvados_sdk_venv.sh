#!/usr/bin/env bash
# Builds a virtualenv with the real Arvados Python SDK (arvados-python-client 2.7.4, the last
# release with the Jobs helpers), for tests/arvados_sdk. It lives apart from .venv because it
# pins protobuf < 4. pycurl < 7.45 builds from source and needs libcurl's headers.
# Prints the venv's python. Reuses the venv when it is already complete.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ARVADOS_SDK_VENV:-$ROOT/.cache/arvados-sdk-2.7.4}"
if [[ -x "$VENV/bin/python" && -f "$VENV/.complete" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
if ! command -v curl-config >/dev/null 2>&1; then
  echo "installing libcurl4-openssl-dev (pycurl builds against it)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4-openssl-dev >&2
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade "pip<25" >&2
"$VENV/bin/pip" install --quiet "arvados-python-client==2.7.4" >&2
"$VENV/bin/python" -c "import arvados" >&2
touch "$VENV/.complete"
echo "$VENV/bin/python"
