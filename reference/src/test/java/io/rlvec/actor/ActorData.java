package io.rlvec.actor;

import java.util.SplittableRandom;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.KlPenalty;
import io.rlvec.LossSpec;
import io.rlvec.VerlRelease;
import io.rlvec.TokenBatch;
import io.rlvec.kl.KlData;

/**
 * Seeded actor-loss inputs over raw float bits, and a double-precision model of dp_actor's composed loss
 * (vanilla PPO-clip + agg_loss + KL loss, times the micro-batch scale) for finite differences.
 */
public final class ActorData {
    private ActorData() {
    }

    /** Column values of one batch (heap copies, also used by the model). */
    public record Inputs(int[] offsets, int paddedWidth, float[] lp, float[] old, float[] ref, float[] adv,
                         float[] mask) {
        /** @return a new off-heap batch of these inputs. */
        public TokenBatch batch() {
            final TokenBatch.Builder b = paddedWidth > 0 ? TokenBatch.padded(offsets.length - 1, paddedWidth)
                : TokenBatch.withOffsets(offsets);
            return b.column(Column.LOG_PROB, lp).column(Column.OLD_LOG_PROB, old).column(Column.REF_LOG_PROB, ref)
                .column(Column.ADVANTAGES, adv).column(Column.RESPONSE_MASK, mask).build();
        }
    }

    /**
     * @param padded whether (B, T) padded (else packed ragged).
     * @param smooth whether to keep inputs away from the clamps (for finite differences).
     * @return inputs: ratio == 1 exactly, A = 0, A &lt; 0, |log-ratio| &gt; 20, masked garbage (unless smooth).
     */
    public static Inputs inputs(final long seed, final int n, final boolean padded, final boolean smooth) {
        final SplittableRandom r = new SplittableRandom(seed);
        final int[] offsets;
        int width = 0;
        int total = n;
        if (padded) {
            final int b = 1 + r.nextInt(4);
            width = Math.max(1, n / b);
            total = b * width;
            offsets = new int[b + 1];
            for (int i = 0; i <= b; i++) {
                offsets[i] = i * width;
            }
        } else {
            final int[] len = KlData.lengths(r, n);
            offsets = new int[len.length + 1];
            for (int i = 0; i < len.length; i++) {
                offsets[i + 1] = offsets[i] + len[i];
            }
        }
        final float[] lp = new float[total];
        final float[] old = new float[total];
        final float[] ref = new float[total];
        final float[] adv = new float[total];
        final float[] mask = new float[total];
        for (int i = 0; i < total; i++) {
            mask[i] = r.nextInt(6) == 0 ? 0f : 1f;
            if (mask[i] == 0f && !smooth) {
                lp[i] = KlData.garbage(r);
                old[i] = KlData.garbage(r);
                ref[i] = KlData.garbage(r);
                adv[i] = KlData.garbage(r);
                continue;
            }
            if (smooth) {
                lp[i] = (float) (-4 * r.nextDouble() - 0.01);
                old[i] = lp[i] + (float) (0.4 * r.nextGaussian());
                ref[i] = lp[i] + (float) (0.6 * r.nextGaussian());
                adv[i] = (float) r.nextGaussian();
                continue;
            }
            lp[i] = KlData.logProb(r);
            final int k = r.nextInt(10);
            old[i] = k < 3 ? lp[i] : (k < 4 ? lp[i] + (r.nextBoolean() ? 25f : -25f) : lp[i]
                + (float) (0.3 * r.nextGaussian()));
            ref[i] = KlData.refFor(r, lp[i]);
            final int a = r.nextInt(10);
            adv[i] = a == 0 ? 0f : (a == 1 ? -0f : Float.intBitsToFloat(((127 - 8 + r.nextInt(10)) << 23)
                | r.nextInt(1 << 23)) * (r.nextBoolean() ? 1 : -1));
        }
        return new Inputs(offsets, width, lp, old, ref, adv, mask);
    }

    /** A spec with the KL loss of {@code klName} (null: no KL) and the given aggregation. */
    public static LossSpec spec(final AggMode mode, final String klName, final double klCoef, final double scale) {
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).clipRatioLow(0.2).clipRatioHigh(0.28)
            .microBatchScale(scale);
        if (klName != null) {
            b.useKlLoss(true).klLossType(KlPenalty.fromVerl(klName)).klLossCoef(klCoef);
        }
        return b.build();
    }

    /** PPO-clip per-token loss in double (bounds rounded to float as torch does). */
    static double pgToken(final LossSpec spec, final double lp, final double old, final double a) {
        final double nkl = Math.max(-20, Math.min(20, lp - old));
        final double ratio = Math.exp(nkl);
        final double lo = (float) (1 - spec.clipRatioLow());
        final double hi = (float) (1 + spec.clipRatioHigh());
        final double pg1 = -a * ratio;
        final double pg2 = -a * Math.max(lo, Math.min(hi, ratio));
        final double c1 = Math.max(pg1, pg2);
        final double pg3 = -a * (float) spec.clipRatioC();
        final double c2 = Math.min(pg3, c1);
        return a < 0 ? c2 : c1;
    }

    /** @return a code of the PPO-clip branch at a token (finite differences need the same branch at lp +- h). */
    static int pgRegion(final LossSpec spec, final double lp, final double old, final double a) {
        final double raw = lp - old;
        final double ratio = Math.exp(Math.max(-20, Math.min(20, raw)));
        final double lo = (float) (1 - spec.clipRatioLow());
        final double hi = (float) (1 + spec.clipRatioHigh());
        final double pg1 = -a * ratio;
        final double pg2 = -a * Math.max(lo, Math.min(hi, ratio));
        final double pg3 = -a * (float) spec.clipRatioC();
        return (raw < -20 ? 1 : raw > 20 ? 2 : 0) + 3 * (ratio < lo ? 1 : ratio > hi ? 2 : 0)
            + 9 * (pg1 > pg2 ? 1 : pg1 < pg2 ? 2 : 0) + 27 * (Math.max(pg1, pg2) < pg3 ? 1 : 0);
    }

    /** agg_loss in double over per-token values (masked tokens skipped). */
    static double agg(final LossSpec spec, final Inputs in, final double[] v) {
        final int b = in.offsets().length - 1;
        long tokens = 0;
        long seqs = 0;
        final double[] sums = new double[b];
        final long[] counts = new long[b];
        for (int s = 0; s < b; s++) {
            for (int t = in.offsets()[s]; t < in.offsets()[s + 1]; t++) {
                if (in.mask()[t] != 0f) {
                    sums[s] += v[t];
                    counts[s]++;
                }
            }
            tokens += counts[s];
            seqs += counts[s] > 0 ? 1 : 0;
        }
        double num = 0;
        for (int s = 0; s < b; s++) {
            if (counts[s] > 0) {
                num += spec.lossAggMode() == AggMode.SEQ_MEAN_TOKEN_MEAN ? sums[s] / counts[s] : sums[s];
            }
        }
        // verl's agg_loss as its two releases write it (2026-01: the -norm mode is the plain sum over the factor).
        final double gbs = spec.globalBatchSize() != LossSpec.UNSET ? spec.globalBatchSize() : seqs;
        final double factor = Double.isNaN(spec.lossScaleFactor()) ? in.paddedWidth() : spec.lossScaleFactor();
        final boolean jan = spec.release() == VerlRelease.V2026_01;
        final double d = switch (spec.lossAggMode()) {
            case TOKEN_MEAN -> spec.batchNumTokens() != LossSpec.UNSET ? spec.batchNumTokens() : tokens;
            case TOKEN_SUM -> 1;
            case SEQ_MEAN_TOKEN_SUM, SEQ_MEAN_TOKEN_MEAN -> gbs;
            case SEQ_MEAN_TOKEN_SUM_NORM -> jan ? factor : gbs;
        };
        if (d == 0) {
            return 0;
        }
        if (spec.lossAggMode() == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            return jan ? num / d : num / d * spec.dpSize() / factor;
        }
        return num / d * spec.dpSize();
    }

    /** The composed loss in double with log_prob replaced by {@code lp}. */
    static double model(final LossSpec spec, final Inputs in, final double[] lp) {
        final int n = lp.length;
        final double[] pg = new double[n];
        final double[] kl = new double[n];
        for (int t = 0; t < n; t++) {
            if (in.mask()[t] == 0f) {
                continue;
            }
            pg[t] = pgToken(spec, lp[t], in.old()[t], in.adv()[t]);
            if (spec.useKlLoss()) {
                kl[t] = KlData.model(spec.klLossType().estimator(), lp[t], in.ref()[t]);
            }
        }
        double loss = agg(spec, in, pg);
        if (spec.useKlLoss()) {
            loss += spec.klLossCoef() * agg(spec, in, kl);
        }
        return loss * spec.microBatchScale();
    }

    /** The straight-through variants differentiate k2 instead of their value: the model's gradient target. */
    static double modelForGradient(final LossSpec spec, final Inputs in, final double[] lp) {
        if (!spec.useKlLoss() || !spec.klLossType().straightThrough()) {
            return model(spec, in, lp);
        }
        final LossSpec k2 = spec.toBuilder().klLossType(KlPenalty.fromVerl("k2")).build();
        return model(k2, in, lp);
    }
}
