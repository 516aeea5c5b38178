#!/usr/bin/env bash
# ci-services.sh - start the backing services the scale-out tests need, and export their settings.
#
# Sourced (what .ci/run does):
#     source scripts/ci-services.sh          # starts the S3 engine, exports S3_* and TEST_DATABASE_URL
#     ...run the tests...
#     ci_services_stop                       # stops the S3 engine, but only if this script started it
# Executed:
#     eval "$(scripts/ci-services.sh)"       # same as sourcing: logs on stderr, exports on stdout
#     scripts/ci-services.sh env             # print the exports without starting anything
#     scripts/ci-services.sh stop            # stop the S3 engine (whoever started it)
#
# Idempotent: an engine that already answers is reused and left running by ci_services_stop.
# The S3 engine is a one-node Ceph RGW from the shared folder beside the repository checkout
# ("$(dirname repo)/shared/s3engine"; S3ENGINE_DIR overrides it). It needs root (it apt-installs
# Ceph on first use). PostgreSQL is expected to run already; it is only checked here.
#
# Settings honoured: S3ENGINE_DIR, RGW_PORT (7480), S3_ACCESS_KEY / S3_SECRET_KEY (the engine's fixed
# keys), S3_BUCKET (imgvault-ci), S3_REGION (us-east-1), TEST_DATABASE_URL.

_ci_services_log() { printf '[ci-services] %s\n' "$*" >&2; }

_ci_services_init() {
  local script_dir repo
  script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 1
  repo=$(dirname "$script_dir")
  CI_SERVICES_S3ENGINE_DIR=${S3ENGINE_DIR:-$(dirname "$repo")/shared/s3engine}
  CI_SERVICES_RGW_PORT=${RGW_PORT:-7480}
  CI_SERVICES_ACCESS_KEY=${S3_ACCESS_KEY:-S3ENGINETESTACCESSKEY}
  CI_SERVICES_SECRET_KEY=${S3_SECRET_KEY:-s3engineTestSecretKey0123456789abcdefABCD}
}

# Exports (and prints, for eval) the settings the S3 and PostgreSQL suites read.
_ci_services_export() {
  export S3_ENDPOINT="http://127.0.0.1:${CI_SERVICES_RGW_PORT}"
  export S3_ACCESS_KEY_ID="$CI_SERVICES_ACCESS_KEY"
  export S3_SECRET_ACCESS_KEY="$CI_SERVICES_SECRET_KEY"
  export S3_BUCKET="${S3_BUCKET:-imgvault-ci}"
  export S3_REGION="${S3_REGION:-us-east-1}"
  export S3_FORCE_PATH_STYLE=true
  export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  local name
  for name in S3_ENDPOINT S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY S3_BUCKET S3_REGION S3_FORCE_PATH_STYLE TEST_DATABASE_URL; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done
}

# A signed request succeeds: the engine is up and knows our keys.
_ci_services_s3_answers() {
  curl -sf -o /dev/null --max-time 5 --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$CI_SERVICES_ACCESS_KEY:$CI_SERVICES_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "http://127.0.0.1:${CI_SERVICES_RGW_PORT}/" 2>/dev/null
}

ci_services_start() {
  _ci_services_init || return 1
  if command -v curl >/dev/null 2>&1 && _ci_services_s3_answers; then
    _ci_services_log "S3 engine already answers on 127.0.0.1:${CI_SERVICES_RGW_PORT}; reusing it"
    export CI_SERVICES_STARTED_RGW=0
  else
    local start="$CI_SERVICES_S3ENGINE_DIR/start-rgw.sh"
    if [ ! -x "$start" ]; then
      _ci_services_log "ERROR: $start not found (set S3ENGINE_DIR to the s3engine folder)"
      return 1
    fi
    _ci_services_log "starting the S3 engine with $start"
    if ! RGW_PORT="$CI_SERVICES_RGW_PORT" S3_ACCESS_KEY="$CI_SERVICES_ACCESS_KEY" S3_SECRET_KEY="$CI_SERVICES_SECRET_KEY" \
      "$start" >&2; then
      _ci_services_log "ERROR: the S3 engine did not start (logs under \${S3ENGINE_DATA:-/tmp/s3engine/data}/log)"
      return 1
    fi
    export CI_SERVICES_STARTED_RGW=1
  fi

  _ci_services_export

  if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -d "$TEST_DATABASE_URL"; then
    _ci_services_log "WARNING: PostgreSQL does not answer at $TEST_DATABASE_URL; the PostgreSQL suites will fail"
  fi
}

# Stops the S3 engine if this script started it; `ci_services_stop --force` stops it regardless.
ci_services_stop() {
  _ci_services_init || return 1
  if [ "${1:-}" != --force ] && [ "${CI_SERVICES_STARTED_RGW:-0}" != 1 ]; then
    _ci_services_log "leaving the S3 engine running (not started by this script)"
    return 0
  fi
  "$CI_SERVICES_S3ENGINE_DIR/stop-rgw.sh" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed, not sourced: stdout carries only the export lines.
  set -uo pipefail
  case "${1:-start}" in
    start) ci_services_start || exit 1 ;;
    env) _ci_services_init && _ci_services_export ;;
    stop) ci_services_stop --force ;;
    *) echo "usage: $0 [start|env|stop]" >&2; exit 2 ;;
  esac
else
  # Sourced: start now; the caller's shell keeps the exports and gains ci_services_stop. The
  # export lines that eval needs are noise here, so they go nowhere.
  ci_services_start >/dev/null
fi
