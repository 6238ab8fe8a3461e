#!/usr/bin/env bash
# `make bench`: the benchmarks behind docs/benchmarks.md, each next to its
# baseline in the same run. Needs the dev stack for the Kafka and ClickHouse
# rows (started here) and root for the BPF rows. Output: var/bench/*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/bench
bash scripts/deps.sh
bash deploy/dev/kafka.sh start >/dev/null
bash deploy/dev/clickhouse.sh start >/dev/null
export EXFILWATCH_TEST_KAFKA=127.0.0.1:9092 EXFILWATCH_TEST_CLICKHOUSE=127.0.0.1:9000
BT=${BENCHTIME:-1s}
run() { # name package regexp [extra args]
  local name=$1 pkg=$2 re=$3; shift 3
  echo "== $name ($pkg -bench '$re')"
  go test -run '^$' -bench "$re" -benchmem -benchtime "$BT" "$@" "$pkg" | tee "var/bench/$name.txt" | grep -E '^Benchmark|^ok|FAIL'
}
run transport-codec ./transport/ 'Encode|Decode'
run transport-kafka ./transport/ 'Kafka' -benchtime 200000x
run collector ./collector/... '.'
run parse ./collector/parse/ '.'
run bpf ./bpf/ '.'
run geo ./enrich/geo/ 'Lookup'
run ident ./enrich/ident/ 'Scan'
run enrich ./enrich/ 'Enrich'
run detect ./detect/ 'Process'
run clickhouse ./sink/clickhouse/ 'InsertFlows|FlowColumnsAdd' -benchtime 5x

echo "== whole pipeline (simulated lab -> real Kafka -> enrich -> detect -> real ClickHouse)"
go build -o bin/exfilwatch ./cmd/exfilwatch
./bin/exfilwatch demo --devices "${BENCH_DEVICES:-500}" --background "${BENCH_BACKGROUND:-100}" --kafka 127.0.0.1:9092 --clickhouse 127.0.0.1:9000 --dir var/bench/demo 2>&1 | tee var/bench/pipeline.txt | grep -E 'frames|drained'
