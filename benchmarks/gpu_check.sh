#!/usr/bin/env bash
# `make gpu-check`: benchmarks/gpu_check.py on a GPU machine (docs/performance.md, "GPU").
# Where DVC or dvclive is missing (the lent GPU machine has torch + CUDA but neither, and
# no network), it first installs the wheels in .whl/ that benchmarks/gpu_wheels.sh
# downloaded where pip works. Arguments go to gpu_check.py, e.g. `--out DIR`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! "$PY" -c "import dvc, dvclive" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu-check: no dvc/dvclive here and no wheels in .whl/ (run benchmarks/gpu_wheels.sh" \
         "where pip works, and bring .whl/ along)" >&2
    exit 2
  fi
  SITE=${ALPHAVIL_WHEEL_SITE:-/tmp/alphavil-site}
  t=$SECONDS
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl || exit 2
  echo "gpu-check: installed $(ls .whl/*.whl | wc -l) wheels into $SITE in" \
       "$((SECONDS - t)) s"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
fi
export PYTHONUNBUFFERED=1
exec "$PY" -m benchmarks.gpu_check "$@"
