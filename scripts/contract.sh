#!/usr/bin/env bash
# The OpenAPI contract, checked from both sides against fresh servers on the embedded default:
#  0. openapi-spec-validator: the document is valid OpenAPI 3.1.
#  1. schemathesis (every check, every phase, contract/schemathesis.toml) once with a fixed
#     seed and once with a random one, printed for replay (`scripts/contract.sh SEED` runs
#     that seed only). Reports: target/contract/report-SEED/ (JSON and JUnit).
#  2. a client generated from /openapi.json by openapi-python-client drives the README
#     walkthrough (contract/walkthrough.py).
# Needs target/debug/ggprov (cargo build); installs the pinned tools into target/moto-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/moto-venv
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import schemathesis, openapi_python_client, openapi_spec_validator' 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.32.5' 'openapi-python-client==0.29.1' 'openapi-spec-validator==0.9.0' >&2
examples=${GGPROV_CONTRACT_EXAMPLES:-100}
seeds=("${1:-7}")
[[ $# -eq 0 ]] && seeds+=("$(( (RANDOM << 15) | RANDOM ))")

pid=""
stop_server() { [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; pid=""; }
trap stop_server EXIT
# Starts `ggprov serve` with its state in $1 and sets url.
start_server() {
  rm -rf "$1" && mkdir -p "$1"
  GGPROV_LISTEN=127.0.0.1:0 GGPROV_DATA_DIR="$1/data" RUST_LOG=warn target/debug/ggprov serve >"$1/server.log" 2>&1 &
  pid=$!
  url=""
  for _ in $(seq 1 200); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$1/server.log" | head -1 || true)
    [[ -n "$url" ]] && curl -sf "$url/ready" >/dev/null && return 0
    sleep 0.05
  done
  echo "the server did not start; see $1/server.log" >&2
  exit 1
}

status=0
# The document itself is valid OpenAPI 3.1.
"$venv/bin/openapi-spec-validator" openapi/openapi.json

for seed in "${seeds[@]}"; do
  start_server "target/contract/run-$seed"
  "$venv/bin/python" contract/seed.py "$url"
  out=target/contract/run-$seed/schemathesis.txt
  echo "schemathesis: seed $seed, $examples examples per operation (replay: scripts/contract.sh $seed)"
  if "$venv/bin/schemathesis" --config-file contract/schemathesis.toml run "$url/openapi.json" \
      --phases examples,coverage,fuzzing,stateful --max-examples "$examples" --seed "$seed" \
      --header "Accept: application/vnd.aws-cdf-v1.0+json" --report json,junit \
      --report-dir "target/contract/report-$seed" --no-color >"$out" 2>&1; then
    grep -E "generated, .* passed|Operations:|Tested:" "$out" | tr -s ' ' || true
  else
    status=1
    cat "$out"
    echo "schemathesis found failures with seed $seed (replay: scripts/contract.sh $seed)" >&2
  fi
  stop_server
done

echo "generated client (openapi-python-client) drives the README walkthrough"
rm -rf target/contract/client
cat >target/contract/client.yaml <<'YAML'
content_type_overrides:
  application/vnd.aws-cdf-v1.0+json: application/json
package_name_override: ggprov_client
YAML
# openapi-python-client 0.29.1 emits code that does not import `Unset` for an operation whose
# body has two media types and which has no other optional parameter (PUT /templates/{name}):
# it is given the document with only the CDF media type on request bodies.
"$venv/bin/python" - <<'PY'
import json
doc = json.load(open("openapi/openapi.json"))
for item in doc["paths"].values():
    for operation in item.values():
        operation.get("requestBody", {}).get("content", {}).pop("application/json", None)
json.dump(doc, open("target/contract/openapi-cdf-bodies.json", "w"))
PY
"$venv/bin/openapi-python-client" generate --path target/contract/openapi-cdf-bodies.json --config target/contract/client.yaml \
  --meta none --output-path target/contract/client/ggprov_client >target/contract/client-generate.log 2>&1 \
  || { cat target/contract/client-generate.log; exit 1; }
start_server target/contract/walkthrough
PYTHONPATH=target/contract/client "$venv/bin/python" contract/walkthrough.py "$url" || status=1
stop_server
exit $status
