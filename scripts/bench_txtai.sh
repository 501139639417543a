#!/usr/bin/env bash
# Optional comparison: recsys versus txtai's /search API, same texts, same model, same wrk script.
#
#   scripts/bench_txtai.sh [VENV] [recsys bench options...]
#   scripts/bench_txtai.sh .bench/txtai-venv --dataset ../shared/data --articles 100000
#
# txtai is not a recsys dependency. This script makes a venv of its own for it (default
# .bench/txtai-venv), installs txtai[api] there and then runs `recsys bench --txtai-venv VENV ...`.
# By default the new venv also sees the recsys venv's packages (a .pth file), so torch,
# sentence-transformers and faiss are the very same builds and are not downloaded again (torch from
# PyPI would pull its CUDA wheels). TXTAI_ISOLATED=1 installs everything into the venv instead.
# PYTHON is the interpreter that has recsys installed (default: python3 on PATH).
set -euo pipefail

VENV="${1:-.bench/txtai-venv}"
[ $# -gt 0 ] && shift
PYTHON="${PYTHON:-python3}"

if ! command -v wrk >/dev/null; then
    echo "wrk not found: apt-get install wrk (macOS: brew install wrk)" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    probe="$(mktemp -d)"
    trap 'rm -rf "$probe"' EXIT
    if ! "$PYTHON" -m pip download --quiet --no-deps -d "$probe" txtai >"$probe/log" 2>&1; then
        echo "txtai cannot be downloaded here, so the txtai comparison is skipped:" >&2
        tail -3 "$probe/log" >&2
        exit 3
    fi
    "$PYTHON" -m venv "$VENV"
    if [ -z "${TXTAI_ISOLATED:-}" ]; then
        shared="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        own="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        echo "$shared" > "$own/_recsys_shared.pth"
    fi
    "$VENV/bin/python" -m pip install --quiet "txtai[api]"
fi
"$VENV/bin/python" -c "import txtai.api, txtai.embeddings" || { echo "txtai does not import in $VENV" >&2; exit 3; }
exec "$PYTHON" -m recsys.cli bench --txtai-venv "$VENV" "$@"
