#!/usr/bin/env bash
# One sitting against PyTorch 2.7 through DJL: builds the engine's benchmarks and the peer's into one JMH jar
# (jmh-peer, Maven profile 'peer'), runs the engine, the reference, the floors and PyTorch as it comes in one JMH
# run, then PyTorch again with jemalloc preloaded, and renders the comparison (Markdown table + PNG chart).
#
# Usage: bench/run-peer.sh [REGEX] [extra JMH options, given to both runs]
#   bench/run-peer.sh                 # every kernel that has a peer, with the floors
#   WI=2 I=3 bench/run-peer.sh '(TorchPolicyModes|\.PolicyLoss)Benchmark\.policyLoss$' -p shape=padded-8x512
#   MODES=gspo,kl_cov bench/run-peer.sh 'PolicyModes|\.PolicyLossBenchmark'   # some policy-loss modes only
# Environment: WI, I (warm-up / measurement iterations, 5 / 5), W, R (their times, 1s / 1s), FORKS (1),
#   MODES (the policy-loss modes, comma-separated; default all eleven that have a peer), OUT (reports/peer), SKIP_BUILD=1 to reuse jmh-peer/target/peer-benchmarks.jar, DJL_CACHE_DIR (where DJL
#   unpacks libtorch, ~450 MB; default ~/.djl.ai).
# Needs: the 106 MiB pytorch-native-cpu jar from Maven Central (first build), and for the second run Debian's
#   libjemalloc2 (apt-get install libjemalloc2); without it that run is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
. .mvn/jdk.sh

# Every kernel that has a peer: the vocabulary pass and actor loss (VocabBenchmark, TorchVocabBenchmark), the actor
# loss from log-probs (ActorLossBenchmark, TorchTokenBenchmark), every policy-loss mode (PolicyLossBenchmark,
# TorchPolicyModesBenchmark; its vanilla row is TorchTokenBenchmark.policyLoss's computation, so that one is left
# out), the advantage estimators (AdvantageBenchmark, TorchAdvantageBenchmark), and the floors.
regex='(Vocab|ActorLoss)Benchmark\.(forwardBackward|actorLoss)$|TorchTokenBenchmark\.actorLoss$|(TorchPolicyModes|\.PolicyLoss)Benchmark\.policyLoss$|AdvantageBenchmark\.advantages$|Vocab(Exp)?FloorBenchmark\.(expPolynomial|streamToGradient)$'
# The policy-loss modes both sides measure (PolicyLossBenchmark's default is vanilla alone).
modes=${MODES:-vanilla,gspo,sapo,gpg,cispo,dppo_tv,dppo_kl,dro,geo_mean,clip_cov,kl_cov}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  regex="$1"
  shift
fi
out="${OUT:-reports/peer}"
jar=jmh-peer/target/peer-benchmarks.jar
mkdir -p "$out"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  ./mvnw -q -B -ntp -Ppeer -DskipTests -pl jmh-peer -am package
fi

common=(-f "${FORKS:-1}" -wi "${WI:-5}" -i "${I:-5}" -w "${W:-1s}" -r "${R:-1s}" -foe true -prof gc
        -p impl=vector,vector2,reference -p engine=vector,vector2,reference -p "mode=$modes" "$@")
export OMP_NUM_THREADS=2
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
echo "run-peer: CPU $cpu; one sitting: engine, reference, floors and PyTorch (system malloc)" >&2
"$JAVA_HOME/bin/java" -jar "$jar" "$regex" "${common[@]}" -rf json -rff "$out/jmh-peer.json"

jemalloc=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null || true)
reports=("$out/jmh-peer.json")
if [ -n "$jemalloc" ]; then
  echo "run-peer: PyTorch again with jemalloc preloaded (memory kept for reuse)" >&2
  LD_PRELOAD="$jemalloc" MALLOC_CONF="oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1" \
    "$JAVA_HOME/bin/java" -jar "$jar" "$regex" -e 'io\.rlvec\.jmh\.(?!peer\.)' \
    "${common[@]}" -rf json -rff "$out/jmh-peer-jemalloc.json"
  reports+=("$out/jmh-peer-jemalloc.json")
else
  echo "run-peer: libjemalloc2 is not installed (apt-get install libjemalloc2): PyTorch with jemalloc not measured" >&2
fi
"$JAVA_HOME/bin/java" -Djava.awt.headless=true -cp "$jar" io.rlvec.jmh.report.BenchReport \
  --title "RLVec vs PyTorch 2.7 (DJL) on $cpu" --md "$out/report.md" --png "$out/report.png" "${reports[@]}"
echo "run-peer: $out/report.md, $out/report.png" >&2
