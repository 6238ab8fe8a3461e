#!/usr/bin/env bash
# Instructions per identifier scan, counted by valgrind's callgrind: a
# deterministic figure for A/B-ing scanner changes on a noisy machine, where
# timed runs of the same build differ by ±20 %.
#
#   scripts/scan-instructions.sh [REV...]   (default: the working tree)
#
# Each REV (a commit from the one that added this script on, or "." for the
# working tree) is built in a temporary
# worktree and BenchmarkScan runs SCANS times per payload under callgrind,
# collecting only inside its steady-state scans (measuredScan, after the
# benchmark's warm-up; inside (*Scanner).Scan for older builds, which then
# include the first scan's buffer growth) with GC off; the table gives instructions per
# scan and per byte and, for every REV after the first, the ratio to the
# first. Env: DEVICES (index size, default 2000), SCANS (default 200),
# PAYLOADS (default "headers headers-varied json binary").
#
# Caveats: valgrind has no AVX-512, so the class masks are built by the
# pure-Go kernel (hasMaskAsm is false): the mask part counts several times
# what the assembly path executes, the rest (run walk, probes, windows,
# decoders) is the code that runs natively. Instructions are not time:
# cache misses and mispredictions are not in this figure.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "scan-instructions: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
DEVICES=${DEVICES:-2000} SCANS=${SCANS:-200}
PAYLOADS=${PAYLOADS:-headers headers-varied json binary}
revs=("$@"); [ ${#revs[@]} -gt 0 ] || revs=(.)
tmp=$(mktemp -d); [ -z "${KEEP:-}" ] || echo "scan-instructions: keeping $tmp" >&2
trap '[ -n "${KEEP:-}" ] && exit; for w in "$tmp"/wt-*; do [ -d "$w" ] && git worktree remove --force "$w"; done; rm -rf "$tmp"' EXIT
bins=()
for i in "${!revs[@]}"; do
  r=${revs[$i]} bin=$tmp/ident.$i
  if [ "$r" = . ]; then
    go test -c -o "$bin" ./enrich/ident
  else
    git worktree add -q --detach "$tmp/wt-$i" "$r"
    (cd "$tmp/wt-$i" && go test -c -o "$bin" ./enrich/ident)
  fi
  bins+=("$bin")
done
jobs=()
for i in "${!bins[@]}"; do
  for p in $PAYLOADS; do
    out=$tmp/cg.$i.$p
    # Count inside measuredScan (steady-state scans only, after BenchmarkScan's
    # warm-up); builds from before it existed count inside Scan.
    toggle='*(*Scanner).Scan'
    # (grep without -q reads all of nm's output: nm would die of SIGPIPE,
    # which pipefail turns into a failed test)
    if go tool nm "${bins[$i]}" | grep 'ident\.measuredScan$' >/dev/null; then toggle='*ident.measuredScan'; fi
    # Async preemption signals break callgrind's signal handling; a GC cycle
    # started inside Scan (a first-scan allocation can trigger one) would
    # count the marking of the whole index: GOGC=off.
    (cd "$tmp" && GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 EXFILWATCH_SCAN_DEVICES=$DEVICES \
      valgrind --tool=callgrind --log-file="$out.vg" --toggle-collect="$toggle" --callgrind-out-file="$out" \
      "${bins[$i]}" -test.run '^$' -test.bench "^BenchmarkScan/devices=$DEVICES/$p\$" -test.benchtime "${SCANS}x" \
      >"$out.log" 2>&1 || { echo "scan-instructions: valgrind failed, see below" >&2; tail -20 "$out.log" "$out.vg" >&2; exit 1; }) &
    jobs+=($!)
    # Two at a time: the index build dominates and wants a core each.
    if [ $(( ${#jobs[@]} % 2 )) -eq 0 ]; then wait "${jobs[@]}"; jobs=(); fi
  done
done
[ ${#jobs[@]} -eq 0 ] || wait "${jobs[@]}"
printf '%-16s %-14s %14s %10s %8s\n' payload rev instr/scan instr/byte ratio
for p in $PAYLOADS; do
  base=
  for i in "${!bins[@]}"; do
    out=$tmp/cg.$i.$p
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    # -test.benchtime Nx runs the benchmark body with b.N = 1, then N.
    calls=$(( SCANS + 1 ))
    [ "${total:-0}" -gt 0 ] || { echo "scan-instructions: no Scan ran in $out.log (REV older than EXFILWATCH_SCAN_DEVICES?)" >&2; exit 1; }
    per=$(( total / calls ))
    size=$(awk '/^BenchmarkScan/ {for (k=2; k<=NF; k++) if ($k=="bytes/scan") print $(k-1)}' "$out.log" | tail -1)
    perbyte=-; [ -n "$size" ] && perbyte=$(awk -v a="$per" -v b="$size" 'BEGIN {printf "%.1f", a/b}')
    ratio=-; if [ -z "$base" ]; then base=$per; else ratio=$(awk -v a="$per" -v b="$base" 'BEGIN {printf "%.3f", a/b}'); fi
    printf '%-16s %-14s %14d %10s %8s\n' "$p" "${revs[$i]}" "$per" "$perbyte" "$ratio"
  done
done
