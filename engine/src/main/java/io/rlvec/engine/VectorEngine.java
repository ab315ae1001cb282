package io.rlvec.engine;

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
import io.rlvec.reference.ActorLoss;
import io.rlvec.reference.Advantages;
import io.rlvec.reference.BypassMode;
import io.rlvec.reference.RolloutCorrection;

/**
 * The fast path: Vector API kernels over off-heap memory, bit-identical to the reference on elementwise outputs
 * and gradients, within 1 ulp on reduced scalars (design.md). Validates once at entry, then runs raw loops.
 * Not thread-safe: use one engine per thread (or its own {@code parallelism} for blocked kernels).
 */
public final class VectorEngine implements Engine {
    private final EngineGuard guard = new EngineGuard();
    private final Blocks blocks;
    private final Workspace workspace = new Workspace();

    /** An engine running on the calling thread. */
    public VectorEngine() {
        this(1);
    }

    /** @param parallelism worker threads for blocked kernels. */
    public VectorEngine(final int parallelism) {
        this.blocks = new Blocks(parallelism);
    }

    @Override
    public String name() {
        return "vector-" + Vec.BITS + (blocks.parallelism() > 1 ? "x" + blocks.parallelism() : "");
    }

    @Override
    public void policyLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                           final PolicyLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.policyLoss(spec, batch, gradLogProb, out);
            switch (spec.policyLossMode()) {
                case VANILLA -> PolicyLossKernel.vanilla(spec, batch, gradLogProb, out, workspace, blocks);
                case GEO_MEAN -> GeoMeanKernel.compute(spec, batch, gradLogProb, out, workspace, advantageKernel);
                case BYPASS_MODE -> bypass.compute(spec, batch, gradLogProb, out, bypassInner);
                default -> RuleKernel.compute(spec, batch, gradLogProb, out, workspace, advantageKernel, blocks);
            }
        }
    }

    private final RolloutKernel bypassKernel = new RolloutKernel(new AdvantageKernel());
    private final BypassMode bypass = new BypassMode(bypassKernel);
    /** Bound once: a method reference capturing this would allocate per call. */
    private final BypassMode.Inner bypassInner = this::policyLossOf;

    /** The non-bypass policy losses (bypass_mode's inner loss). */
    private void policyLossOf(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                              final PolicyLossResult out) {
        switch (spec.policyLossMode()) {
            case VANILLA -> PolicyLossKernel.vanilla(spec, batch, gradLogProb, out, workspace, blocks);
            case GEO_MEAN -> GeoMeanKernel.compute(spec, batch, gradLogProb, out, workspace, advantageKernel);
            case BYPASS_MODE -> throw new IllegalStateException("bypass_mode has no inner bypass_mode");
            default -> RuleKernel.compute(spec, batch, gradLogProb, out, workspace, advantageKernel, blocks);
        }
    }

    @Override
    public void aggLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray lossMat,
                        final OffHeapArray gradOut, final AggResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.aggLoss(spec, batch, lossMat, gradOut, out);
            AggKernel.compute(spec, batch, lossMat, gradOut, out, workspace, blocks);
        }
    }

    @Override
    public void valueLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradVpreds,
                          final ValueLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.valueLoss(spec, batch, gradVpreds, out);
            AggKernel.valueLoss(spec, batch, gradVpreds, out, workspace, blocks);
        }
    }

    @Override
    public void close() {
        guard.close();
        if (actor != null) {
            actor.close();
        }
        blocks.close();
        bypass.close();
        bypassKernel.close();
        rolloutKernel.close();
        rolloutScratch.close();
        workspace.close();
    }

    // ---- Vocabulary pass ----

    /** Vocabulary-pass kernel and its reusable per-call state (one per engine, like the workspace). */
    private final VocabKernel vocab = new VocabKernel();

    @Override
    public void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                         final OffHeapArray rowMask, final OffHeapArray logProbOut, final OffHeapArray entropyOut,
                         final OffHeapArray sumPiSquaredOut, final SoftmaxStats statsOut,
                         final OffHeapArray gradLogits) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, sumPiSquaredOut, statsOut,
                gradLogits);
            // Kept whenever the buffer is not the logits' own memory (the forward must not overwrite them).
            final boolean keep = gradLogits != null && gradLogits.address() != logits.data().address();
            if (keep) {
                statsOut.keptIn(gradLogits);
            }
            vocab.forward(logits, labels, temperature, rowMask, logProbOut, entropyOut, sumPiSquaredOut, statsOut,
                keep ? gradLogits : null, blocks);
        }
    }

    @Override
    public void logProbsBackward(final Logits logits, final OffHeapArray labels, final double temperature,
                                 final OffHeapArray rowMask, final OffHeapArray gradLogProb,
                                 final OffHeapArray gradEntropy, final OffHeapArray gradLogits,
                                 final SoftmaxStats stats) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.logProbsBackward(logits, labels, temperature, rowMask, gradLogProb, gradEntropy, gradLogits, stats);
            final boolean kept = stats != null && stats.keeps(gradLogits);
            vocab.backward(logits, labels, temperature, rowMask, gradLogProb, gradEntropy, gradLogits, stats, kept,
                blocks);
            if (kept) {
                // The gradient has replaced them: a second backward from these statistics evaluates the exps again.
                stats.keptConsumed();
            }
        }
    }

    // ---- KL penalty and the composed actor loss ----

    private final KlKernel kl = new KlKernel();

    // Created on first use: field initialisers run before the constructor has set blocks.
    private ActorLoss actor;

    private ActorLoss actor() {
        if (actor == null) {
            actor = new ActorLoss(this, new ActorKernel(blocks, kl, vocab));
        }
        return actor;
    }

    @Override
    public void klPenalty(final KlPenalty penalty, final TokenBatch batch, final OffHeapArray kldOut,
                          final OffHeapArray gradOut) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.klPenalty(penalty, batch, kldOut, gradOut);
            kl.penalty(penalty, batch, kldOut, gradOut, blocks);
        }
    }

    @Override
    public void klFull(final Logits policy, final Logits reference, final double temperature,
                       final OffHeapArray rowMask, final OffHeapArray kldOut, final OffHeapArray upstream,
                       final OffHeapArray gradLogits) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.klFull(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits);
            kl.full(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits, false, blocks);
        }
    }

    @Override
    public void actorLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                          final ActorLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.actorLoss(spec, batch, gradLogProb, out);
            actor().fromLogProbs(spec, batch, gradLogProb, out);
        }
    }

    @Override
    public void actorLoss(final LossSpec spec, final TokenBatch batch, final Logits logits, final OffHeapArray labels,
                          final Logits refLogits, final OffHeapArray gradLogProb, final OffHeapArray gradLogits,
                          final ActorLossResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.actorLoss(spec, batch, logits, labels, refLogits, gradLogProb, gradLogits, out);
            actor().fromLogits(spec, batch, logits, labels, refLogits, gradLogProb, gradLogits, out);
        }
    }

    private final AdvantageKernel advantageKernel = new AdvantageKernel();
    private final Advantages.Scratch advantageScratch = new Advantages.Scratch();

    @Override
    public void advantages(final AdvantageSpec spec, final TokenBatch batch, final AdvantageInputs inputs,
                           final OffHeapArray advantages, final OffHeapArray returns) {
        try (EngineGuard.Call call = guard.enter()) {
            Advantages.compute(advantageKernel, advantageScratch, spec, batch, inputs, advantages, returns);
        }
    }

    @Override
    public double rewardKlPenalty(final KlPenalty penalty, final double beta, final TokenBatch batch,
                                  final OffHeapArray kldOut, final OffHeapArray rewardsOut) {
        try (EngineGuard.Call call = guard.enter()) {
            Advantages.validateRewardKl(penalty, beta, batch, kldOut, rewardsOut);
            kl.penalty(penalty, batch.column(io.rlvec.Column.OLD_LOG_PROB), batch, kldOut, null, blocks);
            return Advantages.rewardKl(advantageKernel, advantageScratch, batch, beta, kldOut, rewardsOut);
        }
    }

    private final RolloutKernel rolloutKernel = new RolloutKernel(advantageKernel);
    private final RolloutCorrection.Scratch rolloutScratch = new RolloutCorrection.Scratch();

    @Override
    public void rolloutCorrection(final RolloutCorrectionSpec spec, final TokenBatch batch,
                                  final OffHeapArray isWeightsOut, final OffHeapArray maskOut,
                                  final RolloutCorrectionResult out) {
        try (EngineGuard.Call call = guard.enter()) {
            Checks.rolloutCorrection(spec, batch, isWeightsOut, maskOut, out);
            RolloutCorrection.compute(rolloutKernel, rolloutScratch, spec, batch, isWeightsOut, maskOut, out);
        }
    }
}
