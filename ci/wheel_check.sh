#!/usr/bin/env bash
# Build the sdist and wheel, check them, install the wheel into a fresh virtual
# environment with one backend (torch) and run the smoke test there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf dist
$PY -m build --sdist --wheel --outdir dist . > /dev/null
$PY -m twine check --strict dist/*
env_dir=$(mktemp -d)
trap 'rm -rf "$env_dir"' EXIT
python3 -m venv "$env_dir"
"$env_dir/bin/python" -m pip install -q -c ci/constraints.txt "$(ls dist/*.whl)[torch]"
(cd "$env_dir" && KERAS_BACKEND=torch "$env_dir/bin/python" "$OLDPWD/ci/wheel_smoke.py")
