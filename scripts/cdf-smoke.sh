#!/usr/bin/env bash
# Runs the official CDF greengrass2-provisioning TypeScript client smoke
# (../shared/compat/cdf-client-smoke) against a fresh `ggprov serve` on a free port, and fails
# unless every step that the implemented API covers passes. REQUIRED grows with each capability.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIRED=(template.absent template.create template.get template.update template.versions template.delete
          core.task.create core.task.poll core.get core.list core.task.delete
          device.task.unknownCore device.task.create device.task.poll device.delete
          deployment.task.create deployment.task.poll core.deployments fleet.summary)

SRC="${CDF_SMOKE_DIR:-../shared/compat/cdf-client-smoke}"
if [ ! -d "$SRC" ]; then
  echo "skipped: $SRC not found (the smoke lives in the steering repo's shared/ folder)"; exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "skipped: node and npm are needed for the official client smoke"; exit 0
fi

WORK=target/cdf-smoke
mkdir -p "$WORK"
# shared/ is read-only: run from a copy, and install its node modules once per target dir.
cp -r "$SRC"/. "$WORK"/ && chmod -R u+w "$WORK"
if [ ! -d "$WORK/node_modules/@awssolutions/cdf-greengrass2-provisioning-client" ]; then
  (cd "$WORK" && npm install --no-audit --no-fund --loglevel=error)
fi

DATA=$(mktemp -d)
LOG="$WORK/ggprov.log"
GGPROV_LISTEN=127.0.0.1:0 GGPROV_DATA_DIR="$DATA" target/debug/ggprov serve >"$WORK/ggprov.out" 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
URL=""
for _ in $(seq 100); do
  URL=$(sed -n 's/^ggprov listening on //p' "$WORK/ggprov.out" 2>/dev/null || true)
  [ -n "$URL" ] && break
  kill -0 $PID 2>/dev/null || { echo "ggprov did not start:"; cat "$LOG"; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "ggprov printed no address"; cat "$LOG"; exit 1; }

set +e
OUT=$(cd "$WORK" && GG2_BASE_URL="$URL" GG2_PROVISIONING_TEMPLATE=greengrass2_core GG2_EXPECT_DEPLOYMENT=Success GG2_POLL_TIMEOUT_MS=20000 GG2_POLL_INTERVAL_MS=200 node smoke.mjs 2>&1)
set -e
# Show the step lines; the driver's own "N passed, N failed" line is reworded so that CI's
# reading of closing lines only ever sees the Rust test runner's summary.
printf '%s\n' "$OUT" | grep -E '^(PASS|FAIL|SKIP|INFO) ' || true
TOTAL_PASSED=$(printf '%s\n' "$OUT" | grep -c '^PASS ' || true)
missing=()
for step in "${REQUIRED[@]}"; do
  # A here-string, not a pipe: `grep -q` stops reading at its match, and under `pipefail` the
  # writer's SIGPIPE then counted a passed step as missing (it failed a CI run that way).
  grep -qE "^PASS +$step " <<<"$OUT" || missing+=("$step")
done
echo "cdf smoke: $TOTAL_PASSED steps passed; required ${#REQUIRED[@]}, of which ${#missing[@]} did not pass"
if [ ${#missing[@]} -gt 0 ]; then
  echo "required steps that did not pass: ${missing[*]}"
  exit 1
fi
