#!/usr/bin/env bash
# The OpenAPI contract run: schemathesis (every check, every phase) against a fresh server on
# the embedded default. Runs once with a fixed seed and once with a random one, printed for
# replay (`scripts/contract.sh SEED`). Reports: target/contract/report-SEED/.
#   scripts/contract.sh [SEED]       needs target/debug/ggprov (cargo build) and the venv of scripts/moto.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/moto-venv
"$venv/bin/python" -c 'import schemathesis' 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.32.5' >&2
examples=${GGPROV_CONTRACT_EXAMPLES:-100}
seeds=("${1:-7}")
[[ $# -eq 0 ]] && seeds+=("$(( (RANDOM << 15) | RANDOM ))")

status=0
for seed in "${seeds[@]}"; do
  work=target/contract/run-$seed
  rm -rf "$work" && mkdir -p "$work"
  GGPROV_LISTEN=127.0.0.1:0 GGPROV_DATA_DIR="$work/data" RUST_LOG=warn \
    target/debug/ggprov serve >"$work/server.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  url=""
  for _ in $(seq 1 200); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 || true)
    [[ -n "$url" ]] && curl -sf "$url/ready" >/dev/null && break
    sleep 0.05
  done
  [[ -n "$url" ]] || { echo "the server did not start; see $work/server.log" >&2; exit 1; }
  echo "schemathesis: seed $seed, $examples examples per operation, against $url (replay: scripts/contract.sh $seed)"
  if ! "$venv/bin/schemathesis" --config-file contract/schemathesis.toml run "$url/openapi.json" \
      --checks all --phases examples,coverage,fuzzing,stateful --max-examples "$examples" --seed "$seed" \
      --header "Accept: application/vnd.aws-cdf-v1.0+json" --report json,junit --report-dir "target/contract/report-$seed" \
      --no-color >"$work/schemathesis.txt" 2>&1; then
    status=1
    cat "$work/schemathesis.txt"
    echo "schemathesis found failures with seed $seed (replay: scripts/contract.sh $seed)" >&2
  else
    grep -E "^(API Operations|  Tested|Test cases|  [0-9]+ generated)|passed in|generated" "$work/schemathesis.txt" | tail -4
  fi
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  trap - EXIT
done
exit $status
