#!/usr/bin/env bash
# `make test`: install what the tests need, start the dev stack (a real
# one-node Kafka broker and a ClickHouse server on loopback), then run every
# test, the fuzz targets for a bounded time each, vet and staticcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

mkdir -p var
bash scripts/deps.sh
bash deploy/dev/kafka.sh start
bash deploy/dev/clickhouse.sh start

export EXFILWATCH_REQUIRE_INTEGRATION=1
export EXFILWATCH_TEST_KAFKA=${EXFILWATCH_TEST_KAFKA:-127.0.0.1:9092}
export EXFILWATCH_TEST_CLICKHOUSE=${EXFILWATCH_TEST_CLICKHOUSE:-127.0.0.1:9000}

echo "== gofmt / go vet"
unformatted=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [ -n "$unformatted" ]; then echo "gofmt needed on: $unformatted"; exit 1; fi
go vet ./...

echo "== staticcheck"
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
PATH=$PATH:$(go env GOPATH)/bin staticcheck ./...

echo "== go test"
go test -count=1 -timeout 45m -p 2 ./... 2>&1 | tee "$ROOT/var/test.log"; test ${PIPESTATUS[0]} -eq 0

echo "== go test -race (the concurrent parts: reloads, runner, flow table, webhooks, arenas)"
# The whole suite under -race would take most of CI's budget on 2 cores; these
# are the packages and tests where goroutines share state.
go test -race -count=1 -timeout 20m ./enrich/inventory ./collector/flow ./sink/webhook ./internal/strarena
go test -race -count=1 -timeout 20m -run 'Reload|OffHeap|Batch|Pair' ./enrich/geo
go test -race -count=1 -timeout 20m -run '^TestRun' ./transport

echo "== fuzz (bounded)"
FUZZTIME=${FUZZTIME:-10s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $f ($FUZZTIME)"
    # Go 1.26's fuzz coordinator can report a bare "context deadline
    # exceeded" when -fuzztime ends while a worker is mid-call
    # (golang/go#75804, fixed in 1.27; seen in ~1 of 20 targets here). A real
    # finding always writes a failing input, so only that flake, with no
    # input written, is run again, at most twice; anything else fails at once.
    log=$(mktemp)
    for attempt in 1 2 3; do
      if go test -run '^$' -fuzz "^${f}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log"; then
        break
      fi
      if [ "$attempt" = 3 ] || ! grep -q 'context deadline exceeded' "$log" || grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
        rm -f "$log"
        exit 1
      fi
      echo "fuzz $pkg $f: fuzz-coordinator deadline flake (golang/go#75804), no failing input; running again"
    done
    rm -f "$log"
  done
done
echo "== all tests passed"
