#!/usr/bin/env bash
# A fuzzing campaign: each Jazzer target in fuzzing mode (JAZZER_FUZZ=1) for RUNS executions (or MAX_TIME seconds, when
# set, whichever comes first), one after the other, at the lowest CPU priority. Usage: fuzz/campaign.sh [RUNS] [Class#target ...]   (default 1000000, all targets)
# Logs go to fuzz/target/campaign/<target>.log, with a summary line per target (executions, seconds, exec/s, new
# corpus entries) in fuzz/target/campaign/summary.txt. The corpus a target grows lives in
# fuzz/.cifuzz-corpus/<class>/<target>/ (not committed); COPY_CORPUS=1 copies it into the regression corpus under
# fuzz/src/test/resources/io/rlvec/fuzz/<Class>Inputs/<target>/, which `./mvnw verify` replays. A finding stops
# its target: Jazzer writes the input as crash-<sha1> into that regression directory and prints how to reproduce.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000000}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(EngineFuzzTest#batch EngineFuzzTest#policyLoss EngineFuzzTest#aggLoss EngineFuzzTest#klPenalty
    EngineFuzzTest#klFull EngineFuzzTest#vocab EngineFuzzTest#actorLoss EngineFuzzTest#actorLossLogits
    EngineFuzzTest#valueLoss EngineFuzzTest#advantages EngineFuzzTest#rewardKl EngineFuzzTest#rolloutCorrection
    FileFuzzTest#safetensors FileFuzzTest#safetensorsHeader FileFuzzTest#goldenCase)
fi
OUT=fuzz/target/campaign
mkdir -p "$OUT"
./mvnw -B -ntp -q -pl fuzz -am test-compile
for t in "${TARGETS[@]}"; do
  cls="${t%%#*}"; m="${t##*#}"
  log="$OUT/$cls-$m.log"
  start=$(date +%s)
  JAZZER_FUZZ=1 nice -n 19 ./mvnw -B -ntp -q -pl fuzz -am test -Dtest="$t" \
    -Dsurefire.failIfNoSpecifiedTests=false -Djazzer.internal.arg.0=fuzz -Djazzer.internal.arg.1="-runs=$RUNS" \
    ${MAX_TIME:+-Djazzer.internal.arg.2=-max_total_time=$MAX_TIME} > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -a -E '^#[0-9]+\s+DONE' "$log" | tail -1)
  execs=$(grep -a -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
  finding=$(grep -a -m1 -E 'crash-[0-9a-f]+|== Java Exception' "$log" || true)
  echo "$t rc=$rc wall=${secs}s | ${execs:-no summary} | ${done_line:-} | ${finding:-no finding}" | tee -a "$OUT/summary.txt"
  if [ "${COPY_CORPUS:-0}" = 1 ] && [ -d "fuzz/.cifuzz-corpus/io.rlvec.fuzz.$cls/$m" ]; then
    dest="fuzz/src/test/resources/io/rlvec/fuzz/${cls}Inputs/$m"
    mkdir -p "$dest"
    cp -n "fuzz/.cifuzz-corpus/io.rlvec.fuzz.$cls/$m/"* "$dest/" 2>/dev/null || true
  fi
done
