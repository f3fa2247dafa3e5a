#!/usr/bin/env bash
# Runs every test. Ends with one line: "N passed, N failed" (", N skipped" may follow).
#   ./test.sh           the fast default suite
#   ./test.sh --full    also the long runs (fuzzing at full size, learning-quality tables)
#   ./test.sh FILTER    only tests whose name contains FILTER (dotnet test --filter)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
filter=()
for arg in "$@"; do
  case "$arg" in
    --full) export MEDFORMER_FULL_TESTS=1 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) filter=(--filter "FullyQualifiedName~$arg") ;;
  esac
done
scripts/setup.sh test || { echo "0 passed, 1 failed"; exit 1; }

# MLflow's own code reads our stores in the tracking tests; it is neither packaged by Debian nor vendored here. A
# local mirror of its repository (a git directory: MEDFORMER_MLFLOW_MIRROR, default where this machine's tool
# library keeps one) is unpacked once into .build/mlflow-src; without one those tests skip and say why.
mirror=${MEDFORMER_MLFLOW_MIRROR:-/work/.mirror/harupy+mlflow/repo}
if [ -z "${MEDFORMER_MLFLOW_SOURCE:-}" ] && [ ! -f .build/mlflow-src/mlflow/__init__.py ] && [ -d "$mirror" ]; then
  rm -rf .build/mlflow-src.part && mkdir -p .build/mlflow-src.part &&
    /usr/bin/python3 tests/reference/unpack_mlflow.py "$mirror" .build/mlflow-src.part >/dev/null &&
    rm -rf .build/mlflow-src && mv .build/mlflow-src.part .build/mlflow-src ||
    echo "test.sh: could not unpack MLflow's source from $mirror; the tests that run MLflow will skip"
fi

log=.build/test.log
# --blame: if the test host dies in native code, the log names the test that was running (a crash under load was
# seen twice this session, in libLibTorchSharp.so, and not yet explained).
dotnet test tests/Medformer.Tests.csproj -c Release --no-build -nologo --blame "${filter[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(Passed|Failed)!' "$log" | tail -1)
passed=$(sed -nE 's/.*Passed: *([0-9]+).*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.*Failed: *([0-9]+),.*/\1/p' <<<"$summary")
skipped=$(sed -nE 's/.*Skipped: *([0-9]+).*/\1/p' <<<"$summary")
if [ -z "$summary" ]; then
  passed=0; failed=1; skipped=0
  echo "test.sh: the test run printed no summary (exit $status); see $log"
elif [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then
  failed=1
  echo "test.sh: dotnet test exited $status with no failed test; see $log"
fi
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
[ "${failed:-0}" -eq 0 ] && [ "$status" -eq 0 ]
