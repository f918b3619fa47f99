#!/usr/bin/env bash
# Wheels that `make gpu-check` installs on a GPU machine that has torch + CUDA but no DVC,
# dvclive or mlxtend and no network (docs/performance.md, "GPU"). Run here, from the
# repository root, with network access to PyPI:
#     bash benchmarks/gpu_wheels.sh            # -> .whl/ (git-ignored), ~30 MB
# then carry `.whl` along with the tree. Target: CPython 3.12 on manylinux x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEST=${DEST:-.whl}
mkdir -p "$DEST"
# one version of each package: the offline install there stops at two
rm -f "$DEST"/*.whl
# a constraints file of this machine's pins would make pip refuse the 3.12 resolution
export PIP_CONSTRAINT=""
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}")
# antlr4-python3-runtime 4.9.3 (needed through hydra-core) ships only as a source
# archive: build its pure-Python wheel first so the binary-only download finds it.
"$PY" -m pip wheel -q --no-deps -w "$DEST" antlr4-python3-runtime==4.9.3
# dvc and dvclive with everything they need, at the project's pins (requirements.txt)
"$PY" -m pip download -q "${TARGET[@]}" --find-links "$DEST" -d "$DEST" \
    dvc==3.67.1 dvclive==3.49.1
# mlxtend alone: its needs (numpy, scipy, pandas, scikit-learn, matplotlib, joblib) are
# on the GPU machine already, and a second numpy on the path would shadow the one its
# torch was built against
"$PY" -m pip download -q "${TARGET[@]}" --no-deps -d "$DEST" mlxtend==0.25.0
n=$(ls "$DEST"/*.whl | wc -l)
echo "gpu_wheels: $n wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
