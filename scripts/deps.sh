#!/usr/bin/env bash
# Installs the Debian packages the tests and the dev stack use, if missing.
# Idempotent: does nothing when every tool is already there.
set -euo pipefail

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want tshark tshark
want mmdblookup mmdb-bin
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
