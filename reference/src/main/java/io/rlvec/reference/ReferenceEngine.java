package io.rlvec.reference;

import io.rlvec.ActorLossResult;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.AggResult;
import io.rlvec.Checks;
import io.rlvec.Engine;
import io.rlvec.EngineGuard;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.PolicyLossResult;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;

/**
 * The executable specification: plain scalar loops, one small class per verl term, in verl's order of
 * operations, with the canonical exp. Read it side by side with {@code verl/trainer/ppo/core_algos.py}.
 * Single-threaded (its results do not depend on any thread count by construction).
 */
public final class ReferenceEngine implements Engine {
    private final EngineGuard guard = new EngineGuard();

    @Override
    public String name() {
        return "reference";
    }

    @Override
    public void policyLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                           final PolicyLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.policyLoss(spec, batch, gradLogProb, out);
            switch (spec.policyLossMode()) {
                case VANILLA -> VanillaPolicyLoss.compute(spec, batch, gradLogProb, out);
                case GEO_MEAN -> GeoMeanPolicyLoss.compute(spec, batch, gradLogProb, out);
                case BYPASS_MODE -> bypass.compute(spec, batch, gradLogProb, out, ReferenceEngine::policyLossOf);
                default -> TokenRulePolicyLoss.compute(spec, batch, gradLogProb, out);
            }
        }
    }

    private final BypassMode bypass = new BypassMode(RolloutCorrection.SCALAR);

    /** The non-bypass policy losses (bypass_mode's inner loss). */
    private static void policyLossOf(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                                     final PolicyLossResult out) {
        switch (spec.policyLossMode()) {
            case VANILLA -> VanillaPolicyLoss.compute(spec, batch, gradLogProb, out);
            case GEO_MEAN -> GeoMeanPolicyLoss.compute(spec, batch, gradLogProb, out);
            case BYPASS_MODE -> throw new IllegalStateException("bypass_mode has no inner bypass_mode");
            default -> TokenRulePolicyLoss.compute(spec, batch, gradLogProb, out);
        }
    }

    @Override
    public void aggLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray lossMat,
                        final OffHeapArray gradOut, final AggResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.aggLoss(spec, batch, lossMat, gradOut, out);
            AggLoss.compute(spec, batch, lossMat, gradOut, out);
        }
    }

    @Override
    public void valueLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradVpreds,
                          final ValueLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.valueLoss(spec, batch, gradVpreds, out);
            ValueLoss.compute(spec, batch, gradVpreds, out);
        }
    }

    // ---- Vocabulary pass ----

    @Override
    public void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                         final OffHeapArray rowMask, final OffHeapArray logProbOut, final OffHeapArray entropyOut,
                         final OffHeapArray sumPiSquaredOut, final SoftmaxStats statsOut,
                         final OffHeapArray gradLogits) {
        try (EngineGuard.Call call = guard.enter()) {
            // The literal spec keeps nothing in gradLogits: its backward evaluates the exp again (the same bits).
            Checks.logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, sumPiSquaredOut, statsOut,
                gradLogits);
            VocabPass.forward(logits, labels, temperature, rowMask, logProbOut, entropyOut, sumPiSquaredOut,
                statsOut);
        }
    }

    @Override
    public void logProbsBackward(final Logits logits, final OffHeapArray labels, final double temperature,
                                 final OffHeapArray rowMask, final OffHeapArray gradLogProb,
                                 final OffHeapArray gradEntropy, final OffHeapArray gradLogits,
                                 final SoftmaxStats stats) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.logProbsBackward(logits, labels, temperature, rowMask, gradLogProb, gradEntropy, gradLogits, stats);
            VocabPass.backward(logits, labels, temperature, rowMask, gradLogProb, gradEntropy, gradLogits, stats);
        }
    }

    // ---- KL penalty and the composed actor loss ----

    private final ActorLoss actor = new ActorLoss(this, new ScalarActorKernels());

    @Override
    public void close() {
        guard.close();
        actor.close();
        bypass.close();
        rolloutScratch.close();
    }

    @Override
    public void klPenalty(final KlPenalty kl, final TokenBatch batch, final OffHeapArray kldOut,
                          final OffHeapArray gradOut) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.klPenalty(kl, batch, kldOut, gradOut);
            KlLoss.compute(kl, batch, kldOut, gradOut);
        }
    }

    @Override
    public void klFull(final Logits policy, final Logits reference, final double temperature,
                       final OffHeapArray rowMask, final OffHeapArray kldOut, final OffHeapArray upstream,
                       final OffHeapArray gradLogits) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.klFull(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits);
            KlLoss.full(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits, false);
        }
    }

    @Override
    public void actorLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                          final ActorLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.actorLoss(spec, batch, gradLogProb, out);
            actor.fromLogProbs(spec, batch, gradLogProb, out);
        }
    }

    @Override
    public void actorLoss(final LossSpec spec, final TokenBatch batch, final Logits logits, final OffHeapArray labels,
                          final Logits refLogits, final OffHeapArray gradLogProb, final OffHeapArray gradLogits,
                          final ActorLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.actorLoss(spec, batch, logits, labels, refLogits, gradLogProb, gradLogits, out);
            actor.fromLogits(spec, batch, logits, labels, refLogits, gradLogProb, gradLogits, out);
        }
    }

    private final Advantages.Scratch advantageScratch = new Advantages.Scratch();

    @Override
    public void advantages(final AdvantageSpec spec, final TokenBatch batch, final AdvantageInputs inputs,
                           final OffHeapArray advantages, final OffHeapArray returns) {
        try (EngineGuard.Call call = guard.enter()) {
            Advantages.compute(Advantages.SCALAR, advantageScratch, spec, batch, inputs, advantages, returns);
        }
    }

    @Override
    public double rewardKlPenalty(final KlPenalty kl, final double beta, final TokenBatch batch,
                                  final OffHeapArray kldOut, final OffHeapArray rewardsOut) {
        try (EngineGuard.Call call = guard.enter()) {
            Advantages.validateRewardKl(kl, beta, batch, kldOut, rewardsOut);
            final java.lang.foreign.MemorySegment old = batch.column(io.rlvec.Column.OLD_LOG_PROB).segment();
            final java.lang.foreign.MemorySegment ref = batch.column(io.rlvec.Column.REF_LOG_PROB).segment();
            final java.lang.foreign.MemorySegment mask = batch.mask().segment();
            final java.lang.foreign.MemorySegment out = kldOut.segment();
            final java.lang.foreign.ValueLayout.OfFloat f32 = java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED
                .withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int t = 0; t < batch.numTokens(); t++) {
                out.setAtIndex(f32, t, mask.getAtIndex(f32, t) != 0
                    ? KlLoss.penalty(kl, old.getAtIndex(f32, t), ref.getAtIndex(f32, t)) : 0f);
            }
            return Advantages.rewardKl(Advantages.SCALAR, advantageScratch, batch, beta, kldOut, rewardsOut);
        }
    }

    private final RolloutCorrection.Scratch rolloutScratch = new RolloutCorrection.Scratch();

    @Override
    public void rolloutCorrection(final RolloutCorrectionSpec spec, final TokenBatch batch,
                                  final OffHeapArray isWeightsOut, final OffHeapArray maskOut,
                                  final RolloutCorrectionResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.rolloutCorrection(spec, batch, isWeightsOut, maskOut, out);
            RolloutCorrection.compute(RolloutCorrection.SCALAR, rolloutScratch, spec, batch, isWeightsOut, maskOut,
                out);
        }
    }
}
