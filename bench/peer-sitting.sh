#!/usr/bin/env bash
# The whole comparison with PyTorch 2.7 through DJL in one sitting, as consecutive JMH runs of the peer jar: JMH
# applies a -p value to every benchmark that has that parameter, so each family of kernels gets its own run with
# its own shapes. Then PyTorch's runs again with jemalloc preloaded (memory kept for reuse), and one report.
#
# Usage: bench/peer-sitting.sh            (about 35 minutes on 2 cores; needs a quiet machine)
# Environment: WI, I, W, R (warm-up / measurement iterations and their times: 3 / 4 / 1s / 500ms: a fork whose
#   kernels compile late still allocated 42 MB/op after three warm-up iterations of 500 ms), FORKS (1),
#   OUT (reports/peer), SKIP_BUILD=1 to reuse jmh-peer/target/peer-benchmarks.jar, MODES (the policy-loss modes
#   with a peer), JEMALLOC=0 to skip the jemalloc runs.
# Runs, each writing $OUT/<run>.json:
#   tokens      every policy-loss mode and the actor loss from log-probs: engine (1, 2 threads), reference, PyTorch
#   bypass      bypass_mode, engine and reference only (no peer), with a longer warm-up: its first calls run
#               interpreted for seconds while C2 compiles the rollout correction's loops
#   advantages  GAE, GRPO, RLOO: engine, reference, PyTorch (verl's loop GAE, vectorized GRPO / RLOO)
#   vocab       the vocabulary pass and the actor loss from logits, with the exp and memory floors
#   *-jemalloc  PyTorch's rows of vocab, tokens and advantages again with jemalloc
set -euo pipefail
cd "$(dirname "$0")/.."
. .mvn/jdk.sh

out="${OUT:-reports/peer}"
jar=jmh-peer/target/peer-benchmarks.jar
modes=${MODES:-vanilla,gspo,sapo,gpg,cispo,dppo_tv,dppo_kl,dro,geo_mean,clip_cov,kl_cov}
mkdir -p "$out"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  ./mvnw -q -B -ntp -Ppeer -DskipTests -pl jmh-peer -am package
fi
timing=(-f "${FORKS:-1}" -wi "${WI:-3}" -i "${I:-4}" -w "${W:-1s}" -r "${R:-500ms}" -foe true -prof gc)
engines=(-p engine=vector,vector2,reference -p impl=vector,vector2,reference)
export OMP_NUM_THREADS=2
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
echo "peer-sitting: CPU $cpu, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

tokens='(TorchPolicyModes|\.PolicyLoss)Benchmark\.policyLoss$|(TorchToken|\.ActorLoss)Benchmark\.actorLoss$'
advantages='AdvantageBenchmark\.advantages$'
vocab='VocabBenchmark\.(forwardBackward|actorLoss)$|Vocab(Exp)?FloorBenchmark\.(expPolynomial|streamToGradient)$'
token_shapes=(-p shape=padded-64x4096,padded-8x512)

jmh() {
  local name=$1
  shift
  echo "peer-sitting: $name" >&2
  "$JAVA_HOME/bin/java" -jar "$jar" "$@" -rf json -rff "$out/$name.json"
}

jmh tokens "$tokens" "${timing[@]}" "${engines[@]}" "${token_shapes[@]}" -p "mode=$modes"
jmh bypass '\.PolicyLossBenchmark\.policyLoss$' -f "${FORKS:-1}" -wi 10 -i "${I:-4}" -w 1s -r "${R:-500ms}" \
  -foe true -prof gc "${engines[@]}" "${token_shapes[@]}" -p mode=bypass_mode
jmh advantages "$advantages" "${timing[@]}" "${engines[@]}"
jmh vocab "$vocab" "${timing[@]}" "${engines[@]}"
reports=("$out/tokens.json" "$out/bypass.json" "$out/advantages.json" "$out/vocab.json")

jemalloc=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null || true)
if [ "${JEMALLOC:-1}" = 1 ] && [ -n "$jemalloc" ]; then
  export MALLOC_CONF="oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"
  peer_only=(-e 'io\.rlvec\.jmh\.(?!peer\.)')
  LD_PRELOAD="$jemalloc" jmh vocab-jemalloc "$vocab" "${peer_only[@]}" "${timing[@]}"
  LD_PRELOAD="$jemalloc" jmh tokens-jemalloc "$tokens" "${peer_only[@]}" "${timing[@]}" "${token_shapes[@]}" \
    -p "mode=$modes"
  LD_PRELOAD="$jemalloc" jmh advantages-jemalloc "$advantages" "${peer_only[@]}" "${timing[@]}"
  reports+=("$out/vocab-jemalloc.json" "$out/tokens-jemalloc.json" "$out/advantages-jemalloc.json")
elif [ "${JEMALLOC:-1}" = 1 ]; then
  echo "peer-sitting: libjemalloc2 is not installed (apt-get install libjemalloc2): PyTorch with jemalloc not measured" >&2
fi
"$JAVA_HOME/bin/java" -Djava.awt.headless=true -cp "$jar" io.rlvec.jmh.report.BenchReport \
  --title "RLVec vs PyTorch 2.7 (DJL) on $cpu" --md "$out/report.md" --png "$out/report.png" "${reports[@]}"
echo "peer-sitting: $out/report.md, $out/report.png" >&2
