package io.rlvec.reference;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.TokenBatch;

/**
 * verl's {@code compute_policy_loss_bypass_mode}, where {@code old_log_prob} is the rollout policy's log-prob:
 * <pre>
 *   (w, rs_mask, rollout_corr/*) = rollout correction(train = log_prob, rollout = old_log_prob, response_mask)
 *                                  (no gradient flows through it)
 *   loss_type ppo_clip:  vanilla(old_log_prob, log_prob, A, rs_mask), no IS weights
 *   loss_type reinforce: pg_losses = -A * log_prob [* w];  pg_loss = agg_loss(pg_losses, rs_mask, ...);
 *                        ppo_kl = masked_mean(old_log_prob - log_prob, rs_mask)   (unclamped)
 *   metrics = the loss's metrics (vanilla's keys, or ppo_kl only) plus rollout_corr/*
 * </pre>
 * Both losses run on the engine's own paths over a view of the batch whose mask is {@code rs_mask}: vanilla for
 * ppo_clip, and gpg's rule ({@code -log_prob * A}, the same float operations) with {@code w} as rollout IS weights
 * for reinforce. The aggregation therefore sees the rejection mask, as verl's does: with {@code batch_num_tokens}
 * unset, token-mean divides by the tokens that survive rejection; a caller passing verl's engine-level
 * {@code batch_num_tokens} (counted on the unmodified mask) keeps the rejected tokens in the denominator, as verl
 * does in bypass mode. One instance per engine; it keeps its buffers and the last view between calls (no
 * allocation while the batch and spec objects are reused).
 */
public final class BypassMode implements AutoCloseable {
    /** The engine's policy loss, run on the derived batch and spec. */
    @FunctionalInterface
    public interface Inner {
        /** Runs a (vanilla or gpg) policy loss on validated arguments. */
        void policyLoss(LossSpec spec, TokenBatch batch, OffHeapArray grad, PolicyLossResult out);
    }

    private final RolloutCorrection.Kernels kernels;
    private final RolloutCorrection.Scratch scratch = new RolloutCorrection.Scratch();
    private final RolloutCorrectionResult metrics = new RolloutCorrectionResult();
    private OffHeapArray rsMask;
    private OffHeapArray weights;
    private TokenBatch viewSource;
    private boolean viewWeighted;
    private TokenBatch view;
    private LossSpec specSource;
    private LossSpec innerSpec;

    /** @param kernels the engine's elementwise rollout-correction pass. */
    public BypassMode(final RolloutCorrection.Kernels kernels) {
        this.kernels = kernels;
    }

    /**
     * Computes bypass_mode's loss, gradient and metrics (arguments validated by the caller).
     *
     * @throws IllegalArgumentException for verl's rollout-correction errors (no valid token; every IcePop weight
     *                                  0), before anything is written.
     */
    public void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out, final Inner inner) {
        final int n = batch.numTokens();
        final boolean reinforce = spec.bypassReinforce();
        final boolean weighted = reinforce && spec.rolloutCorrection().hasIs();
        ensure(n);
        RolloutCorrection.compute(kernels, scratch, spec.rolloutCorrection(), batch, batch.column(Column.LOG_PROB),
            batch.column(Column.OLD_LOG_PROB), weighted ? weights : null, rsMask, metrics);
        final TokenBatch derived = view(batch, weighted);
        inner.policyLoss(inner(spec, reinforce), derived, grad, out);
        double kl = 0;
        if (reinforce) {
            final OffHeapArray lp = batch.column(Column.LOG_PROB);
            final OffHeapArray old = batch.column(Column.OLD_LOG_PROB);
            for (int t = 0; t < n; t++) {
                if (rsMask.getFloat(t) != 0f) {
                    kl += old.getFloat(t) - lp.getFloat(t);
                }
            }
        }
        out.bypass(metrics, reinforce, kl);
    }

    private void ensure(final int n) {
        if (rsMask == null || rsMask.length() < n) {
            close();
            final long size = Math.max(n, 1);
            rsMask = OffHeapArray.allocate(ElementType.F32, size);
            weights = OffHeapArray.allocate(ElementType.F32, size);
            viewSource = null;
        }
    }

    /** The batch over the same offsets and columns with the rejection mask, and w as weights for reinforce. */
    private TokenBatch view(final TokenBatch batch, final boolean weighted) {
        if (batch == viewSource && weighted == viewWeighted) {
            return view;
        }
        if (view != null) {
            view.close();
        }
        final TokenBatch.Builder b;
        if (batch.isPadded()) {
            b = TokenBatch.padded(batch.numSequences(), batch.paddedWidth());
        } else {
            final int[] offsets = new int[batch.numSequences() + 1];
            for (int i = 0; i < offsets.length; i++) {
                offsets[i] = batch.offset(i);
            }
            b = TokenBatch.withOffsets(offsets);
        }
        b.column(Column.LOG_PROB, batch.column(Column.LOG_PROB))
            .column(Column.OLD_LOG_PROB, batch.column(Column.OLD_LOG_PROB))
            .column(Column.ADVANTAGES, batch.column(Column.ADVANTAGES))
            .column(Column.RESPONSE_MASK, rsMask);
        if (weighted) {
            b.column(Column.ROLLOUT_IS_WEIGHTS, weights);
        }
        view = b.build();
        viewSource = batch;
        viewWeighted = weighted;
        return view;
    }

    private LossSpec inner(final LossSpec spec, final boolean reinforce) {
        if (spec != specSource) {
            innerSpec = spec.toBuilder()
                .policyLossMode(reinforce ? PolicyLossMode.GPG : PolicyLossMode.VANILLA).build();
            specSource = spec;
        }
        return innerSpec;
    }

    /** Frees the buffers. */
    @Override
    public void close() {
        scratch.close();
        if (view != null) {
            view.close();
            view = null;
        }
        viewSource = null;
        if (rsMask != null) {
            rsMask.close();
            weights.close();
            rsMask = null;
            weights = null;
        }
    }
}
