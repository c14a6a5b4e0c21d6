#!/usr/bin/env bash
# Every test ggprov has, in one command (README "Test"; CI runs exactly this via .ci/run):
#   1. formatting and lints (rustfmt, clippy -D warnings)
#   2. the official CDF TypeScript client smoke against `ggprov serve` (needs node + npm and
#      ../shared/compat/cdf-client-smoke beside the checkout; skipped with a notice otherwise)
#   3. the reliability harness at small size: a fault run, a crash run (SIGKILLs mid-task) and a
#      race run (simultaneous duplicate submissions, jobs delivered to two workers); each
#      verifies the end state and fails when anything is lost or duplicated; and a rollout run
#      (5 waves, then an abort), which fails if a core moves after the abort; and a software run
#      (the fleet and software summaries over a seeded fleet), which fails if a core is missing;
#      the rollout and fan-out runs with `--check`, which fails when AWS calls per core moved
#      miss issue 18's goal (≤ 2) by more than 5 %
#   4. the OpenAPI contract (scripts/contract.sh): schemathesis, every check and phase, 100
#      examples an operation, a fixed seed and a random one (printed for replay), and a client
#      generated from the document (openapi-python-client) driving the README walkthrough
#   5. every Rust test (nextest): unit tests, the store and queue conformance suites on SQLite,
#      DynamoDB and SQS, end-to-end API tests, and AWS mode end to end. AWS mode runs against
#      moto_server (PyPI moto[server], installed into target/moto-venv and started on a free
#      loopback port by scripts/moto.sh) and the test kit's Greengrass V2 fake. The dashboard's
#      browser tests drive headless Chromium through chromedriver (Debian's chromium and
#      chromium-driver, installed here when absent).
# The Rust tests run last so that their summary is the closing line.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
# The binaries and every test in one build: built apart, the binaries would resolve features
# without the dev-dependencies' (tokio's test-util, reqwest's blocking, ...), and some 110
# crates, the AWS SDK and aws-lc among them, would be compiled and stored twice.
cargo build --locked --workspace --bins --tests

step "official CDF client smoke"
scripts/cdf-smoke.sh

step "reliability harness (small size)"
target/debug/ggprov-bench --out target/bench/ci fault --cores 30
target/debug/ggprov-bench --out target/bench/ci crash --cores 60 --kills 3
target/debug/ggprov-bench --out target/bench/ci race --pairs 30 --claims 10
target/debug/ggprov-bench --out target/bench/ci --check rollout --cores 100 --waves 5
target/debug/ggprov-bench --out target/bench/ci --check fanout --cores 100
target/debug/ggprov-bench --out target/bench/ci software --cores 2000 --requests 500
target/debug/ggprov-bench --out target/bench/ci rotation --cores 40

step "moto (AWS wire protocols for the AWS-mode tests)"
# Reuses GGPROV_TEST_MOTO_URL when it answers; otherwise installs moto into target/moto-venv
# and starts it on a free loopback port, stopped again when this script exits.
MOTO_PID=""
eval "$(scripts/moto.sh)"
if [[ -n "$MOTO_PID" ]]; then
  trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
fi
echo "moto at $GGPROV_TEST_MOTO_URL"

step "cfn-lint infra/"
target/moto-venv/bin/cfn-lint infra/*.yaml

step "OpenAPI contract (schemathesis, generated client)"
scripts/contract.sh

step "Chromium for the dashboard's browser tests"
if [[ ! -x "${GGPROV_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}" || ! -x "${GGPROV_TEST_CHROMIUM:-/usr/bin/chromium}" ]]; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
"${GGPROV_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}" --version

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  echo "(cargo-nextest not installed: using cargo test)"
  cargo test --workspace --locked --no-fail-fast
fi
