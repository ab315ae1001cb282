package io.rlvec.cli.docs;

import io.rlvec.*;
import java.util.Map;

/**
 * Every Java snippet of README.md and docs/api.md, verbatim, as method bodies whose parameters are the variables
 * the snippet assumes: this file compiles with the build, {@link DocSnippetsTest} runs each method on real data
 * and checks that every snippet in the documents is still a snippet here (so none can go stale).
 */
final class DocSnippets {
    private DocSnippets() {
    }

    /** README.md, "Ten lines". */
    static void readmeTenLines(final float[] logProb, final float[] oldLogProb, final float[] advantages,
                               final boolean[] responseMask) {
        try (Engine engine = Engines.preferred();                          // Vector API engine where usable
             TokenBatch batch = TokenBatch.packed(3, 5, 2)                  // 3 responses, 10 tokens back to back
                 .column(Column.LOG_PROB, logProb).column(Column.OLD_LOG_PROB, oldLogProb)
                 .column(Column.ADVANTAGES, advantages).mask(responseMask).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            LossSpec spec = LossSpec.builder().set("clip_ratio_high", 0.28).build();   // verl's keys and defaults
            PolicyLossResult result = new PolicyLossResult();               // reusable: a call allocates nothing
            engine.policyLoss(spec, batch, grad, result);                   // d pg_loss / d log_prob lands in grad
            System.out.println(result.pgLoss() + " " + result.metrics());   // actor/pg_clipfrac, actor/ppo_kl, ...
        }
    }

    /** docs/api.md, the policy loss. */
    static void apiPolicyLoss(final float[] logProb, final float[] oldLogProb, final float[] advantages,
                              final boolean[] responseMask) {
        try (Engine engine = Engines.preferred();                 // vector engine if usable here, else the reference
             TokenBatch batch = TokenBatch.packed(3, 5, 2)        // 3 sequences, 10 tokens back to back (or padded(B, T))
                 .column(Column.LOG_PROB, logProb)                // float[] copied off heap, or an OffHeapArray wrapped
                 .column(Column.OLD_LOG_PROB, oldLogProb)
                 .column(Column.ADVANTAGES, advantages)
                 .mask(responseMask)                              // boolean[]/byte[]; absent = all valid
                 .build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {

            LossSpec spec = LossSpec.builder()                    // verl defaults; or .set("clip_ratio_high", 0.28) by verl key
                .clipRatioLow(0.2).clipRatioHigh(0.28).clipRatioC(3.0)
                .lossAggMode(AggMode.TOKEN_MEAN)
                .build();
            PolicyLossResult result = new PolicyLossResult();    // reusable: calls allocate nothing
            engine.policyLoss(spec, batch, grad, result);
            float loss = result.pgLoss();                         // d loss / d log_prob is in grad
            Map<String, Double> metrics = result.metrics();       // actor/pg_clipfrac, actor/ppo_kl, ...
        }
    }

    /** docs/api.md, rollout correction. */
    static Map<String, Double> apiRolloutCorrection(final Engine engine, final TokenBatch batch,
                                                    final OffHeapArray isWeights, final OffHeapArray rsMask) {
        RolloutCorrectionSpec rc = RolloutCorrectionSpec.builder()              // or .set("rollout_is", "token") by verl key
            .rolloutIs("token").rolloutIsThreshold(2.0)                         // "0.5_2.0": IcePop band; null: no IS
            .rolloutRs("token_k1,seq_mean_k3").rolloutRsThreshold("0.8_1.25,0.01")
            .build();
        RolloutCorrectionResult rcOut = new RolloutCorrectionResult();          // reusable
        engine.rolloutCorrection(rc, batch, isWeights, rsMask, rcOut);          // isWeights may be null; rsMask may be batch.mask()
        Map<String, Double> rcMetrics = rcOut.asMap();                          // rollout_corr/rollout_is_mean, ...
        return rcMetrics;
    }

    /** docs/api.md, the critic's value loss. */
    static float apiValueLoss(final Engine engine, final TokenBatch valueBatch, final OffHeapArray gradVpreds) {
        LossSpec critic = LossSpec.builder()
            .set("cliprange_value", 0.2)                          // the critic's key (default 0.5)
            .lossAggMode(AggMode.TOKEN_MEAN)                      // and verl_semantics: 2026-08 passes the global-batch args
            .build();
        ValueLossResult vf = new ValueLossResult();               // reusable
        engine.valueLoss(critic, valueBatch, gradVpreds, vf);     // columns vpreds, returns, values and the mask
        float vfLoss = vf.vfLoss();                               // d vf_loss / d vpreds is in gradVpreds (or pass null)
        Map<String, Double> criticMetrics = vf.metrics();         // critic/vf_loss, critic/vf_clipfrac, critic/vpred_mean
        return vfLoss;
    }

    /** docs/api.md, the actor loss from logits. */
    static float apiActorLossFromLogits(final Engine engine, final TokenBatch batch, final OffHeapArray logitData,
                                        final int vocab, final int[] sampledTokens, final OffHeapArray gradLogits) {
        Logits logits = Logits.of(logitData, batch.numTokens(), vocab);          // F32 or BF16; Logits.of(data, rows, vocab, rowStride)
        OffHeapArray labels = OffHeapArray.ofInts(sampledTokens);                  // int32, one sampled token per row
        LossSpec spec = LossSpec.builder().temperature(0.7).entropyCoeff(0.001)
            .useKlLoss(true).klLossCoef(0.001).klLossType(KlPenalty.fromVerl("low_var_kl"))
            .microBatchScale(0.25).build();
        ActorLossResult out = new ActorLossResult();
        // arguments 5 and 6: the reference logits (only for kl_loss_type=full, else null) and an optional F32 buffer
        // for d loss / d log_prob; gradLogits receives d loss / d logits (it may be the logits themselves: in place)
        engine.actorLoss(spec, batch, logits, labels, null, null, gradLogits, out);
        float loss = out.loss();                                                  // out.metrics(): verl's actor/* keys
        return loss;
    }

    /** docs/api.md, the vocabulary pass with saved statistics. */
    static void apiVocabularyPass(final Engine engine, final Logits logits, final OffHeapArray labels, final int rows,
                                  final OffHeapArray logProb, final OffHeapArray entropy, final OffHeapArray gradLogProb,
                                  final OffHeapArray gradEntropy, final OffHeapArray gradLogits) {
        try (SoftmaxStats stats = SoftmaxStats.allocate(rows)) {                  // reusable, off heap
            engine.logProbs(logits, labels, 0.7, null, logProb, entropy, stats);    // null: every row valid
            // ... the loss, giving d loss / d log_prob and d loss / d entropy per row ...
            engine.logProbsBackward(logits, labels, 0.7, null, gradLogProb, gradEntropy, gradLogits, stats);
        }
    }

    /** docs/api.md, the vocabulary pass keeping its exps. */
    static void apiKeptExps(final Engine engine, final Logits logits, final OffHeapArray labels,
                            final OffHeapArray logProb, final OffHeapArray entropy, final SoftmaxStats stats,
                            final OffHeapArray gradLogProb, final OffHeapArray gradEntropy,
                            final OffHeapArray gradLogits) {
        engine.logProbs(logits, labels, 0.7, null, logProb, entropy, stats, gradLogits);    // keeps e_j in gradLogits
        // ... the loss; gradLogits must not be written here ...
        engine.logProbsBackward(logits, labels, 0.7, null, gradLogProb, gradEntropy, gradLogits, stats);
    }

    /** docs/api.md, the vocabulary pass with the sum of squared probabilities. */
    static void apiSumPiSquared(final Engine engine, final Logits logits, final OffHeapArray labels,
                                final OffHeapArray logProb, final OffHeapArray entropy,
                                final OffHeapArray sumPiSquared, final SoftmaxStats stats,
                                final OffHeapArray gradLogits) {
        engine.logProbs(logits, labels, 0.7, null, logProb, entropy, sumPiSquared, stats, gradLogits);  // any of the last four may be null
    }
}
