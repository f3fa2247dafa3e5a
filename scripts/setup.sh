#!/usr/bin/env bash
# Installs what is missing and rebuilds what is stale; quiet when there is nothing to do.
#   scripts/setup.sh run    what ./medformer needs: the .NET SDK and a Release build
#   scripts/setup.sh test   what ./test.sh and bench/run need too: Debian's PyTorch (the reference), NumPy, nibabel
set -euo pipefail
mode=${1:-run}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { echo "medformer setup: $*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}. Install them as root: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${missing[@]}" >/tmp/medformer-apt.log 2>&1; then
    apt-get update -qq >>/tmp/medformer-apt.log 2>&1 || true
    apt-get install -y -qq "${missing[@]}" >>/tmp/medformer-apt.log 2>&1 \
      || { say "apt-get install ${missing[*]} failed; see /tmp/medformer-apt.log"; exit 1; }
  fi
}

if ! command -v dotnet >/dev/null 2>&1; then
  say "the .NET SDK (10.0) is missing: install it (https://learn.microsoft.com/dotnet/core/install/linux-debian), then run this again."
  exit 1
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# SkiaSharp's native library (the plots of `medformer runs compare` and `medformer evaluate`) links fontconfig and needs a font.
apt_install libfontconfig1 fonts-dejavu-core
# Gloo (data parallel across processes): the shim in runtime/native is compiled against its headers.
apt_install libgloo-dev g++

if [ "$mode" = test ]; then
  # OpenBLAS: without it Debian's PyTorch falls back to the netlib reference BLAS, 20x slower, and every
  # ratio against the reference would flatter us. nibabel: the NIfTI tests check that it reads what we write.
  # Fashion-MNIST (30 MB): real 28x28 images for the IDX reader's test and the pretraining experiments.
  # PyYAML: the test reader of MLflow's file store reads meta.yaml as MLflow does.
  # iproute2: the two-node data-parallel tests run each rank in its own network namespace (ip netns).
  # time: GNU time -f %M, the peak resident memory of `inspect` on hostile files.
  apt_install python3-torch python3-numpy libopenblas0-pthread python3-nibabel dataset-fashion-mnist python3-yaml iproute2 time
  # MLflow's own SqlAlchemyStore and MlflowClient, run from its source tree (tests/tracking/MlflowSource.cs), read what
  # Medformer's tracking wrote; these are the Debian packages its store needs (tests/reference/mlflow_shim.py stubs
  # the rest, which reading never calls).
  apt_install python3-sqlalchemy python3-alembic python3-protobuf python3-pydantic python3-cachetools python3-sqlparse \
    python3-importlib-metadata python3-requests python3-packaging python3-click python3-cloudpickle
fi

# Rebuild only when a source, project or build file changed since the last good build (.py and .sql: embedded resources).
stamp_file=.build/stamp-Release
stamp=$( { find runtime model datasets training pretrain heads eval tracking cli bench tests \
             \( -name bin -o -name obj \) -prune -o -type f \( -name '*.cs' -o -name '*.csproj' -o -name '*.json' -o -name '*.props' -o -name '*.targets' -o -name '*.cc' -o -name '*.py' -o -name '*.sql' \) -print0 \
           | xargs -0 stat -c '%n %s %Y'; stat -c '%n %s %Y' Directory.Build.props Directory.Build.targets Directory.Packages.props Medformer.sln global.json; } | sort | sha1sum | cut -d' ' -f1)
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  exit 0
fi
mkdir -p .build
say "building (Release)"
if ! dotnet build Medformer.sln -c Release -nologo -v q -clp:ErrorsOnly >.build/build.log 2>&1; then
  grep -E "error|Error" .build/build.log | sort -u | head -40 >&2
  say "build failed; the whole log is in .build/build.log"
  exit 1
fi
echo "$stamp" >"$stamp_file"
