#!/usr/bin/env bash
# Checks the proto contract with buf: `buf lint` (rules in buf.yaml) and `buf breaking` against
# the last published state of the API, the buf image proto/published/jobtask-v1.binpb.
#
#   scripts/proto_checks.sh            run both checks; exits non-zero if either fails
#   scripts/proto_checks.sh publish    (or --publish) record the current contract as published:
#                                      lints it, then rewrites proto/published/jobtask-v1.binpb.
#                                      Do it on purpose, when a version of the API is released,
#                                      and commit the image with the proto change.
#
# buf comes from clients/typescript's devDependencies: `npm ci` runs there first when its
# node_modules is missing or older than its package-lock.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TS_PACKAGE=clients/typescript
BUF="$TS_PACKAGE/node_modules/.bin/buf"
PUBLISHED=proto/published/jobtask-v1.binpb

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ensure_node_deps() {
    local installed="$TS_PACKAGE/node_modules/.package-lock.json"
    if [[ ! -x "$BUF" || ! -f "$installed" || "$TS_PACKAGE/package-lock.json" -nt "$installed" ]]; then
        (cd "$TS_PACKAGE" && npm ci --no-audit --no-fund)
    fi
}

check() {
    local status=0
    echo "== buf lint" >&2
    "$BUF" lint || status=1
    echo "== buf breaking --against $PUBLISHED" >&2
    if [[ ! -f "$PUBLISHED" ]]; then
        echo "missing $PUBLISHED: run scripts/proto_checks.sh publish once, and commit it" >&2
        status=1
    else
        "$BUF" breaking --against "$PUBLISHED" || status=1
    fi
    if [[ $status -ne 0 ]]; then
        echo "proto checks FAILED" >&2
    else
        echo "proto checks passed" >&2
    fi
    return $status
}

publish() {
    echo "== buf lint" >&2
    "$BUF" lint
    mkdir -p "$(dirname "$PUBLISHED")"
    "$BUF" build --exclude-source-info -o "$PUBLISHED"
    echo "wrote $PUBLISHED: commit it with the proto change" >&2
}

case "${1:-check}" in
    check)
        ensure_node_deps
        check
        ;;
    publish | --publish)
        ensure_node_deps
        publish
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
