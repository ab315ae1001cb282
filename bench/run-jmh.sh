#!/usr/bin/env bash
# Builds the JMH benchmarks jar, runs the benchmarks matching a regex, and prints a summary table
# (score ± error, ns/token, gc.alloc.rate.norm, and the vector/reference speed-up of each pair).
#
# Usage: bench/run-jmh.sh [REGEX] [extra JMH options...]
#   bench/run-jmh.sh                          # every benchmark
#   bench/run-jmh.sh PolicyLoss               # reports/jmh-PolicyLoss.json
#   bench/run-jmh.sh PolicyLoss -p shape=padded-8x512 -p agg=seq-mean-token-mean
#   FORKS=3 bench/run-jmh.sh AggLoss          # publishable numbers: >= 3 forks (style.md P13)
#   MARKDOWN=1 SKIP_BUILD=1 bench/run-jmh.sh PolicyLoss   # tables as GitHub markdown, reuse the jar
#
# Environment (defaults in brackets): FORKS [1], WI warm-up iterations [5], I measurement iterations [5],
# W warm-up time [1s], R measurement time [1s], PROF profilers, comma-separated, empty for none [gc],
# NAME report name [the regex with non-word characters replaced, or "all"], SKIP_BUILD=1 to reuse
# jmh/target/benchmarks.jar, MVN_FLAGS extra Maven flags (e.g. -o offline), MARKDOWN=1 for markdown tables.
# Extra arguments go to JMH and replace the matching default (e.g. -f 3, -wi 10, -foe false); -p adds parameters.
# Re-summarise a saved report: java -cp jmh/target/benchmarks.jar io.rlvec.jmh.report.Summary [--markdown] F.json
set -euo pipefail
cd "$(dirname "$0")/.."
. .mvn/jdk.sh

regex=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  regex="$1"
  shift
fi
name="${NAME:-$(printf %s "${regex:-all}" | tr -c 'A-Za-z0-9_.-' '_')}"
report="reports/jmh-$name.json"
jar="jmh/target/benchmarks.jar"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  # shellcheck disable=SC2086  # MVN_FLAGS is a list of flags
  ./mvnw -q ${MVN_FLAGS:-} -DskipTests -pl jmh -am package
fi
[ -f "$jar" ] || { echo "run-jmh: $jar is missing (build it, or drop SKIP_BUILD=1)" >&2; exit 1; }
mkdir -p reports

# JMH refuses an option given twice (except -p and -prof), so a default is passed only when the extra
# arguments do not set that option themselves.
extra=("$@")
user_sets() {
  local a
  for a in "${extra[@]}"; do [ "$a" = "$1" ] && return 0; done
  return 1
}
for fixed in -rf -rff; do
  if user_sets "$fixed"; then
    echo "run-jmh: $fixed is set by this script (the summary reads $report); use NAME=... to rename the report" >&2
    exit 1
  fi
done
jmh_args=(-rf json -rff "$report")
default() { user_sets "$1" || jmh_args+=("$1" "$2"); }
default -f "${FORKS:-1}"
default -wi "${WI:-5}"
default -i "${I:-5}"
default -w "${W:-1s}"
default -r "${R:-1s}"
# A benchmark whose answer check throws fails the whole run (non-zero exit) instead of being skipped.
default -foe true
IFS=',' read -r -a profilers <<< "${PROF-gc}"
for p in "${profilers[@]}"; do
  [ -n "$p" ] && jmh_args+=(-prof "$p")
done

echo "run-jmh: JDK $JAVA_HOME, report $report" >&2
"$JAVA_HOME/bin/java" -jar "$jar" ${regex:+"$regex"} "${jmh_args[@]}" "$@"

summary_args=()
[ "${MARKDOWN:-0}" = 1 ] && summary_args+=(--markdown)
echo
"$JAVA_HOME/bin/java" -cp "$jar" io.rlvec.jmh.report.Summary "${summary_args[@]}" "$report"
