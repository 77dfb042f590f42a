#!/usr/bin/env bash
# Set up and run every check, from a fresh clone: lint and types, the release (wheel and sdist
# built, `twine check`ed, the wheel installed in a fresh venv without TensorFlow and the runtime
# tests run against it), the default tests that did not pass there and the heavy ones (-m slow)
# in the full environment, the docs build, and last the emulated aarch64 parity check.
#
# Every stage runs even when an earlier one failed (a stage that needs the full environment is
# skipped, and says so, only when that environment could not be set up). The summary at the end
# lists each stage with its result and time, and the exit status is non-zero if any failed.
#
# Environment: PYTHON (default python3), VGGSIM_SKIP_AARCH64=1 (skip the 2-8 minute emulated
# check on purpose), VGGSIM_STAGES="lint tests ..." (run only these stages, after setup),
# VGGSIM_TEST_WORKERS (pytest-xdist processes for the release stage's tests; default 2, 0 runs
# them in one process).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export TF_CPP_MIN_LOG_LEVEL=3 PIP_DISABLE_PIP_VERSION_CHECK=1
PYTEST=(-p no:cacheprovider --durations=10)
# The release stage's tests in two pytest-xdist workers, one test file each at a time (a file's servers
# and stores are its own): much of that run waits on child processes, servers and sockets, so two
# processes share the two cores (the whole default run: 12 min 12 s in one process here, 7 min 50 s in
# two). More would only queue on two cores. The tests stage stays in one process: its TensorFlow exports
# and Ray cluster keep both cores busy, and two workers made it no faster and 1.4 GB larger.
WORKERS=(-n "${VGGSIM_TEST_WORKERS:-2}" --dist loadfile)
[[ ${VGGSIM_TEST_WORKERS:-2} =~ ^[0-9]+$ ]] \
  || { echo "scripts/test.sh: VGGSIM_TEST_WORKERS must be a whole number (0: one process), not '$VGGSIM_TEST_WORKERS'" >&2; exit 2; }
EXTRAS=export,test,ann,fp16,serve,ray,edge-bench,store,docs
T0=$SECONDS
NAMES=() RESULTS=() FAILED=0 PASSED=0 SETUP_OK=0

# Memory: the machine's memory in use (MemTotal - MemAvailable: page cache left out) sampled each
# second, less what was in use when the run started; each stage's peak is in the summary. Work
# running beside this run on the same machine counts too.
MEMDIR=$(mktemp -d)
used_mib() { awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print int((t-a)/1024)}' /proc/meminfo; }
BASE_MIB=$(used_mib) RUN_PEAK_MIB=0
echo 0 > "$MEMDIR/peak"
( while kill -0 $$ 2>/dev/null; do
    u=$(used_mib); p=$(cat "$MEMDIR/peak" 2>/dev/null || echo 0)
    [ "$u" -gt "${p:-0}" ] && echo "$u" > "$MEMDIR/peak.new" && mv "$MEMDIR/peak.new" "$MEMDIR/peak"
    sleep 1
  done ) &
SAMPLER=$!
BACKGROUND=()  # setup's apt-get and KServe installs, stopped with the run if it is cut short
trap 'kill $SAMPLER "${BACKGROUND[@]}" 2>/dev/null; rm -rf "$MEMDIR"' EXIT

want() { [ "$1" = setup ] || [ -z "${VGGSIM_STAGES:-}" ] || [[ " $VGGSIM_STAGES " == *" $1 "* ]]; }

stage() {  # stage NAME FUNCTION: run it, record "passed"/"FAILED (exit N)" and its time
  local name=$1 fn=$2 t0=$SECONDS rc
  want "$name" || return 0
  echo
  echo "== [$(( SECONDS - T0 ))s] $name"
  if [ "$name" != setup ] && [ "$SETUP_OK" != 1 ] && [ "$fn" != aarch64 ]; then
    NAMES+=("$name") RESULTS+=("skipped: the setup stage failed")
    FAILED=$((FAILED + 1))
    return 0
  fi
  echo 0 > "$MEMDIR/peak"
  "$fn"
  rc=$?
  sleep 1  # one more sample
  local peak=$(( $(cat "$MEMDIR/peak") - BASE_MIB ))
  [ "$peak" -lt 0 ] && peak=0
  [ "$peak" -gt "$RUN_PEAK_MIB" ] && RUN_PEAK_MIB=$peak
  NAMES+=("$name")
  if [ $rc = 0 ]; then RESULTS+=("passed in $(( SECONDS - t0 )) s, peak $peak MiB"); PASSED=$((PASSED + 1))
  else RESULTS+=("FAILED (exit $rc) after $(( SECONDS - t0 )) s, peak $peak MiB"); FAILED=$((FAILED + 1)); fi
}

setup() {
  # Debian's packages and KServe's venv come from the network beside the main install, not after it.
  local rc=0
  setup_apt > "$MEMDIR/apt.log" 2>&1 & BACKGROUND+=($!)
  setup_kserve > "$MEMDIR/kserve.log" 2>&1 & BACKGROUND+=($!)
  setup_venv || rc=$?
  wait "${BACKGROUND[@]}"
  BACKGROUND=()
  cat "$MEMDIR/apt.log" "$MEMDIR/kserve.log"
  [ $rc = 0 ] || return $rc
  # One random-weight model, verified against Keras, for every stage (VGGSIM_TEST_MODEL): exported
  # once here rather than once per pytest session.
  rm -rf .cache/test-model
  .venv/bin/vggsim export --weights random --seed 0 --out .cache/test-model >/dev/null || return
  SETUP_OK=1
}

setup_venv() {
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || return
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel || return
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]" "mypy==2.4.1" "ruff==0.17.6" "build>=1.2" "twine>=5" || return
  # imagededup's evaluation code cross-checks `vggsim eval`'s figures (tests/test_evaluation.py); without its
  # dependencies, which are torch and torchvision for its CNN methods, never used by its evaluation
  .venv/bin/python -m pip install -q --no-deps "imagededup==0.3.3.post2"
}

setup_apt() {
  # The web page test drives Debian's chromium through chromedriver (never a downloaded browser), and
  # the aarch64 stage needs qemu-user-static and mmdebstrap. Installed where this runs as root with apt;
  # elsewhere the web page test skips and says why, and so does the aarch64 stage.
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  local updated=0
  apt_install() {  # apt_install COMMAND... -- PACKAGE...: install the packages unless the commands exist
    local commands=() missing=0
    while [ "$1" != -- ]; do commands+=("$1"); shift; done; shift
    for c in "${commands[@]}"; do command -v "$c" >/dev/null 2>&1 || missing=1; done
    [ $missing = 1 ] || return 0
    [ $updated = 1 ] || { apt-get update -qq && updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || echo "apt-get could not install $*"
  }
  apt_install chromium chromedriver -- chromium chromium-driver
  if want aarch64 && [ -z "${VGGSIM_SKIP_AARCH64:-}" ]; then
    apt_install qemu-aarch64-static mmdebstrap -- qemu-user-static mmdebstrap
  fi
}

setup_kserve() {
  # KServe's own client checks the /v2 routes (tests/test_serve_oip.py) from a venv of its own: kserve
  # brings uvloop, Kubernetes and pandas, which the test environment must not import.
  if [ ! -x .venv-kserve/bin/python ] || ! .venv-kserve/bin/python -c 'import kserve' 2>/dev/null; then
    { "$PYTHON" -m venv .venv-kserve && .venv-kserve/bin/python -m pip install -q "kserve==0.21.0"; } \
      || echo "KServe's client could not be installed: its OIP test will skip"
  fi
}

lint() { .venv/bin/ruff check runtime export tests benchmarks scripts; }
types() { .venv/bin/mypy; }
# Each default test runs once: the release stage runs the runtime tests against the installed wheel
# and lists those that passed there; this stage runs the rest (those that need TensorFlow, Ray,
# OpenVINO, ... and any that failed against the wheel) in the full environment. Without that list
# (the release stage not run, or it could not build the wheel) it runs them all.
tests_default() {
  local leave_out=()
  if [ -s "$WHEEL_PASSED" ]; then
    echo "$(wc -l < "$WHEEL_PASSED") tests passed against the installed wheel (release stage); the rest run here"
    leave_out=(--leave-out "$WHEEL_PASSED")
  fi
  VGGSIM_TEST_MODEL="$PWD/.cache/test-model" .venv/bin/python -m pytest -q "${PYTEST[@]}" "${leave_out[@]}" tests
}
# One pytest process per slow test: TensorFlow keeps its gigabytes until its process exits, and
# the three tests that run Keras in process held 6.4 GB together in one.
tests_slow() {
  local ids=() id rc=0 listed out code
  # a module that fails to import is a failure of this stage, not a test left out of the list
  listed=$(.venv/bin/python -m pytest -q -p no:cacheprovider --collect-only -m slow tests 2>&1) \
    || { echo "$listed"; echo "collecting the slow tests failed" >&2; return 1; }
  mapfile -t ids < <(grep '::' <<< "$listed")
  [ ${#ids[@]} -gt 0 ] || { echo "no slow tests were collected" >&2; return 1; }
  for id in "${ids[@]}"; do
    out=$(VGGSIM_TEST_MODEL="$PWD/.cache/test-model" .venv/bin/python -m pytest -q -rs -p no:cacheprovider -m slow "$id" 2>&1)
    code=$?
    if [ $code = 0 ]; then echo "$id: $(tail -n 1 <<< "$out")"; grep '^SKIPPED' <<< "$out"; else echo "$out"; rc=1; fi
  done
  return $rc
}
# Not --quiet: it drops warnings before --strict counts them, so broken links would pass (mkdocs 1.6).
docs() { NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true .venv/bin/mkdocs build --strict --site-dir .cache/site; }

release() {
  # What a user installs: the built wheel in a fresh venv without TensorFlow, the runtime tests
  # run against it (not against the checkout).
  rm -rf dist .venv-wheel
  .venv/bin/python -m build --quiet --outdir dist . >/dev/null || return
  .venv/bin/twine check --strict dist/* || return
  "$PYTHON" -m venv .venv-wheel || return
  .venv-wheel/bin/python -m pip install -q --upgrade pip || return
  .venv-wheel/bin/python -m pip install -q "$(ls dist/vggsim-*.whl)[test,store,ann,serve]" || return
  local where
  where=$(cd /tmp && "$OLDPWD/.venv-wheel/bin/python" -c 'import vggsim; print(vggsim.__file__)') || return
  case $where in "$PWD/.venv-wheel/"*) echo "runtime tests against the installed wheel: $where" ;;
    *) echo "vggsim imports from $where, not from the installed wheel" >&2; return 1 ;; esac
  VGGSIM_TEST_MODEL="$PWD/.cache/test-model" VGGSIM_RUNTIME_ONLY=1 \
    .venv-wheel/bin/python -m pytest -q "${PYTEST[@]}" "${WORKERS[@]}" --record-passed "$WHEEL_PASSED" tests -m "not export and not slow"
}

aarch64() {
  # Needs qemu-user-static and mmdebstrap, which it installs with apt where this runs as root.
  if [ -n "${VGGSIM_SKIP_AARCH64:-}" ]; then echo "skipped: VGGSIM_SKIP_AARCH64 is set"; return 0; fi
  if [ "$(id -u)" != 0 ] && ! { command -v qemu-aarch64-static && command -v mmdebstrap; } >/dev/null 2>&1; then
    echo "skipped: needs qemu-user-static and mmdebstrap (apt-get install, as root)"; return 0
  fi
  [ -f .cache/test-model/manifest.json ] || { echo "no test model: the setup stage failed" >&2; return 1; }
  VGGSIM_TEST_MODEL="$PWD/.cache/test-model" VGGSIM_HOST_PYTHON="$PWD/.venv/bin/python" bash scripts/aarch64/check.sh
}

WHEEL_PASSED=$MEMDIR/wheel-passed  # written by the release stage of this run only
stage setup setup
stage lint lint
stage types types
stage release release
stage tests tests_default
stage tests-slow tests_slow
stage docs docs
stage aarch64 aarch64

echo
echo "== summary ($(( (SECONDS - T0) / 60 )) min $(( (SECONDS - T0) % 60 )) s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs)"
for i in "${!NAMES[@]}"; do printf '  %-11s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"; done
echo "  peak memory in use: $RUN_PEAK_MIB MiB above the $BASE_MIB MiB in use at the start (MemTotal - MemAvailable, sampled each second)"
echo "stages: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
