#!/usr/bin/env bash
# Installs the Debian packages the tests and the dev stack use, if missing.
# Idempotent: does nothing when every tool is already there.
set -euo pipefail

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want tshark tshark
want mmdblookup mmdb-bin
dpkg -s libmaxminddb-dev >/dev/null 2>&1 || need+=(libmaxminddb-dev) # enrich/geo batch lookups (cc -lmaxminddb)
want tcpreplay tcpreplay
want ip iproute2
want jq jq
want clang clang
want llvm-strip llvm
want bpftool bpftool
want protoc protobuf-compiler
want mvn maven
want java default-jre-headless
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)

if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Independent Community ID oracle for the collector tests (PyPI).
if ! python3 -c 'import communityid' >/dev/null 2>&1; then
  echo "deps: installing communityid from PyPI" >&2
  python3 -m pip install -q communityid==1.5.0
fi

# chdb: ClickHouse 26.9's engine in-process (PyPI chdb-core), so the sink's
# tests run the modern DDL profile and the saved queries on a current
# ClickHouse (sink/clickhouse/profiles_chdb_test.go); Debian has no current
# server. In its own venv under var/ (gitignored); --no-deps: the tests use
# the engine only, not the pandas/pyarrow front ends (about 250 MB).
chdb_venv="$(cd "$(dirname "$0")/.." && pwd)/var/chdb-venv"
if ! "$chdb_venv/bin/python" -c 'import importlib.metadata as m, sys, chdb; sys.exit(m.version("chdb-core") != "26.9.0")' >/dev/null 2>&1; then
  echo "deps: installing chdb-core 26.9.0 into $chdb_venv" >&2
  python3 -m venv "$chdb_venv"
  "$chdb_venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps chdb-core==26.9.0
  "$chdb_venv/bin/python" -c 'import chdb; chdb.query("SELECT 1")'
fi
