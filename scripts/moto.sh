#!/usr/bin/env bash
# Makes sure a moto server is there for the AWS-mode tests and prints the line that points the
# tests at it:   eval "$(scripts/moto.sh)"
# The same virtualenv holds cfn-lint (run on infra/) and the contract tools of scripts/contract.sh.
# - reuses GGPROV_TEST_MOTO_URL when it answers;
# - otherwise installs moto[server] into target/moto-venv (once; pip from PyPI) and starts a
#   single-threaded server on a free loopback port (its pid in MOTO_PID, for stopping it).
set -euo pipefail
cd "$(dirname "$0")/.."

answers() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2)' "$1" >/dev/null 2>&1; }

venv=target/moto-venv
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import moto.server' >/dev/null 2>&1 \
   || [[ ! -x "$venv/bin/cfn-lint" ]]; then
  mkdir -p target
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'cfn-lint==1.58.0' \
    'schemathesis==4.32.5' 'openapi-python-client==0.29.1' 'openapi-spec-validator==0.9.0' >&2
fi

if [[ -n "${GGPROV_TEST_MOTO_URL:-}" ]] && answers "$GGPROV_TEST_MOTO_URL"; then
  echo "export GGPROV_TEST_MOTO_URL=${GGPROV_TEST_MOTO_URL}"
  exit 0
fi

log=target/moto.log
"$venv/bin/python" scripts/moto_server.py 0 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 || true)
  if [[ -n "$url" ]] && answers "$url"; then
    echo "export GGPROV_TEST_MOTO_URL=$url MOTO_PID=$pid"
    exit 0
  fi
  sleep 0.1
done
echo "moto did not start; see $log" >&2
exit 1
