#!/usr/bin/env bash
# `make bench`: the benchmarks in tests/bench, each with its baseline measured in the same run.
#
#   scripts/bench.sh                     cli_startup, routing, config_load, providers, proxy, pipeline, agents, telegram, federation, routers, anchor, tools, then compose
#   scripts/bench.sh routing             one of them (cli_startup | routing | config_load | providers | proxy | pipeline | agents | telegram | federation | routers | anchor | tools | compose)
#                                        (anchor: OpenClaw on the same fake model, compared with the last pipeline
#                                        run; skipped, saying why, when OpenClaw is not installed)
#   scripts/bench.sh pipeline --quick    extra arguments go to every benchmark run
#   make bench ARGS="--quick"
#
# Figures are informational (no thresholds). JSON results and the printed output are kept in
# .ci-logs/bench/<name>.json and <name>.log. Exit status: non-zero if a benchmark failed (the
# gateway did not start, too many requests failed, a wrong routing decision).
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(cli_startup routing config_load providers proxy pipeline agents telegram federation routers anchor tools compose)
PY=.venv/bin/python
OUT=.ci-logs/bench

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

names=()
args=()
for arg in "$@"; do
  case "$arg" in
    cli_startup | routing | config_load | providers | proxy | pipeline | agents | telegram | federation | routers | anchor | tools | compose) names+=("$arg") ;;
    -h | --help) usage; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done
[ "${#names[@]}" -gt 0 ] || names=("${ALL[@]}")

if [ ! -x "$PY" ]; then
  echo "error: $PY not found; run 'make install' first" >&2
  exit 1
fi
mkdir -p "$OUT"

failed=()
summary=()
for name in "${names[@]}"; do
  json="$OUT/$name.json"
  log="$OUT/$name.log"
  rm -f "$json"
  echo "==> $name  ($PY -m tests.bench.$name ${args[*]+"${args[*]}"})"
  start=$(date +%s)
  set +e
  "$PY" -m "tests.bench.$name" --json "$json" ${args[@]+"${args[@]}"} 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  seconds=$(($(date +%s) - start))
  if [ "$rc" -eq 0 ]; then
    summary+=("$name: ok in ${seconds}s -> $json")
  else
    summary+=("$name: FAILED (exit $rc) after ${seconds}s -> $log")
    failed+=("$name")
  fi
  echo
done

echo "==> bench summary"
for line in "${summary[@]}"; do
  echo "  $line"
done
jsons=()
for name in "${names[@]}"; do
  [ -f "$OUT/$name.json" ] && jsons+=("$OUT/$name.json")
done
if [ "${#jsons[@]}" -gt 0 ]; then
  "$PY" -m tests.bench.summary "${jsons[@]}"
  echo "  JSON results: ${jsons[*]}"
fi
[ "${#failed[@]}" -eq 0 ] || exit 1
