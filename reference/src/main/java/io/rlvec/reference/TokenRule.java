package io.rlvec.reference;

import io.rlvec.CanonicalMath;
import io.rlvec.LossSpec;

/**
 * The per-token part of one verl policy-loss mode: from (log_prob, old_log_prob, advantage) to the token's
 * {@code pg_losses} entry, its derivative with respect to log_prob (autograd's, stop-gradients included) and the
 * token's share of the mode's metrics. Everything around it (masking, the rollout weight, the aggregation, the
 * sums behind the metrics) is the same for every mode and lives in {@link TokenRulePolicyLoss} (reference) and
 * the engine's rule kernel; a mode contributes only this.
 *
 * <p>Scalars verl passes as Python floats (1 - clip_ratio_low, clip_ratio_c, tau, ...) are rounded to float32
 * once, as torch does when it combines them with a float32 tensor.
 */
public abstract class TokenRule {
    /** verl's clamp of the log-ratio in the modes that clamp it. */
    public static final float LOG_RATIO_MIN = -20f;
    /** verl's clamp of the log-ratio in the modes that clamp it. */
    public static final float LOG_RATIO_MAX = 20f;

    /** One token's values, overwritten by every {@link #token} call. */
    public static final class Token {
        /** pg_losses at the token, before the rollout weight. */
        public float loss;
        /** d pg_losses / d log_prob at the token, before the rollout weight and the aggregation weight. */
        public float grad;
        /** the importance ratio the sign-split metrics read (ratio &gt; 1). */
        public float ratio;
        /** the token's summand of the mode's ppo_kl. */
        public float kl;
        /** counted by pg_clipfrac. */
        public boolean clipped;
        /** counted by pg_clipfrac_lower. */
        public boolean lower;
        /** A &lt; 0 and held at the lower bound (clipfrac_low). */
        public boolean clippedLow;
        /** A &gt; 0 and held at the upper bound (clipfrac_high). */
        public boolean clippedHigh;
    }

    /**
     * @param lp       log_prob.
     * @param old      old_log_prob.
     * @param a        the advantage.
     * @param sequence a per-sequence input of the mode (gspo: the sequence's mean log-ratio), else unused.
     * @param flag     a per-token selection of the mode (clip_cov, kl_cov: the token was selected), else false.
     * @param out      receives the token's values.
     */
    public abstract void token(float lp, float old, float a, float sequence, boolean flag, Token out);

    /** @return the rule of the spec's mode (not vanilla, not geo_mean, which have their own kernels). */
    public static TokenRule of(final LossSpec spec) {
        return switch (spec.policyLossMode()) {
            case DPPO_TV -> new Dppo(spec, false);
            case DPPO_KL -> new Dppo(spec, true);
            case SAPO -> new Sapo(spec);
            case GPG -> new Gpg();
            case CISPO -> new Cispo(spec);
            case DRO -> new Dro(spec);
            case GSPO -> new Gspo(spec);
            case KL_COV -> new KlCov(spec);
            case CLIP_COV -> new ClipCov(spec);
            default -> throw new IllegalArgumentException("policy_loss.loss_mode=" + spec.policyLossMode().verlName()
                + " has no token rule");
        };
    }

    /**
     * verl's unclamped ratio exp(nakl) (clip_cov, kl_cov), except where {@code -A * exp(nakl)} is not finite while
     * A is finite and nakl is a number (the exp overflowed, or 0 * Inf): there exp(clamp(nakl, -20, 20)), vanilla's
     * clamp, so the loss stays finite where verl's would be Inf or NaN. Equal to verl's wherever that is finite.
     */
    public static float overflowSafeRatio(final float a, final float nakl) {
        final float ratio = CanonicalMath.exp(nakl);
        return overflows(-a * ratio, a, nakl) ? CanonicalMath.exp(TorchOps.clamp(nakl, LOG_RATIO_MIN, LOG_RATIO_MAX))
            : ratio;
    }

    /** Whether a value computed from finite {@code a} and non-NaN {@code x} overflowed (Inf, or NaN from 0 * Inf). */
    static boolean overflows(final float value, final float a, final float x) {
        return !(Math.abs(value) <= Float.MAX_VALUE) && Math.abs(a) <= Float.MAX_VALUE && x == x;
    }

    /** clamp(log_prob - old_log_prob, -20, 20). */
    static float clampedLogRatio(final float lp, final float old) {
        return TorchOps.clamp(lp - old, LOG_RATIO_MIN, LOG_RATIO_MAX);
    }

    /**
     * {@code dppo_tv} / {@code dppo_kl}: pg_losses = -A * sg(clamp(ratio, max=clip_ratio_c)) * log_prob * sg(valid),
     * valid from the total-variation distance p - q (tv) or the binary KL (kl) against clip_ratio_low/high.
     * pg_clipfrac counts invalid tokens, pg_clipfrac_lower the valid ones whose ratio exceeds clip_ratio_c.
     */
    public static final class Dppo extends TokenRule {
        private final boolean binaryKl;
        private final float high;
        private final float low;
        private final float negLow;
        private final float clipC;

        Dppo(final LossSpec spec, final boolean binaryKl) {
            this.binaryKl = binaryKl;
            this.high = (float) spec.clipRatioHigh();
            this.low = (float) spec.clipRatioLow();
            this.negLow = (float) -spec.clipRatioLow();
            this.clipC = (float) spec.clipRatioC();
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float nakl = clampedLogRatio(lp, old);
            final float ratio = CanonicalMath.exp(nakl);
            final float truncated = ratio > clipC ? clipC : ratio;
            final float p = CanonicalMath.exp(lp);
            final float q = CanonicalMath.exp(old);
            final boolean valid;
            if (binaryKl) {
                final float kl = binaryKlOf(p, q, lp, old);
                valid = a > 0f ? (kl <= high || p <= q) : (kl <= low || p >= q);
            } else {
                final float d = p - q;
                valid = a > 0f ? d <= high : d >= negLow;
            }
            final float v = valid ? 1f : 0f;
            final float coef = -a * truncated;
            out.loss = coef * lp * v;
            out.grad = coef * v;
            out.ratio = ratio;
            out.kl = -nakl;
            out.clipped = !valid;
            out.lower = valid && ratio > clipC;
            out.clippedLow = a < 0f && !valid;
            out.clippedHigh = a > 0f && !valid;
        }

        /**
         * q (old - lp) + (1 - q) log((1 - q + 1e-8) / (1 - p + 1e-8)), in float32 except the log, taken in double
         * (StrictMath, so every engine gets the same bits) and rounded.
         */
        public static float binaryKlOf(final float p, final float q, final float lp, final float old) {
            final float num = 1f - q + 1e-8f;
            final float den = 1f - p + 1e-8f;
            final float log = (float) StrictMath.log(num / den);
            return q * (old - lp) + (1f - q) * log;
        }
    }

    /** {@code sapo}: pg_losses = -sigmoid(tau (ratio - 1)) * 4 / tau * A, tau = tau_pos if A &gt; 0 else tau_neg. */
    static final class Sapo extends TokenRule {
        private final float tauPos;
        private final float tauNeg;

        Sapo(final LossSpec spec) {
            this.tauPos = (float) spec.tauPos();
            this.tauNeg = (float) spec.tauNeg();
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float raw = lp - old;
            final float nakl = TorchOps.clamp(raw, LOG_RATIO_MIN, LOG_RATIO_MAX);
            final float ratio = CanonicalMath.exp(nakl);
            final float tau = a > 0f ? tauPos : tauNeg;
            final float scale = 4f / tau;
            final float s = 1f / (1f + CanonicalMath.exp(-(tau * (ratio - 1f))));
            final float gate = s * scale;
            out.loss = -gate * a;
            // d/d lp: -A * 4/tau * s (1 - s) * tau * ratio, where the clamp passes.
            out.grad = TorchOps.clampPasses(raw, LOG_RATIO_MIN, LOG_RATIO_MAX)
                ? (-a * scale) * ((1f - s) * s) * tau * ratio : 0f;
            out.ratio = ratio;
            out.kl = -nakl;
            out.clipped = false;
            out.lower = false;
            out.clippedLow = false;
            out.clippedHigh = false;
        }
    }

    /** {@code gpg}: pg_losses = -log_prob * A. */
    static final class Gpg extends TokenRule {
        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float nakl = clampedLogRatio(lp, old);
            out.loss = -lp * a;
            out.grad = -a;
            out.ratio = CanonicalMath.exp(nakl);
            out.kl = -nakl;
            out.clipped = false;
            out.lower = false;
            out.clippedLow = false;
            out.clippedHigh = false;
        }
    }

    /** {@code cispo}: pg_losses = -sg(clamp(ratio, 1 - low, 1 + high)) * A * log_prob. */
    static final class Cispo extends TokenRule {
        private final float lower;
        private final float upper;

        Cispo(final LossSpec spec) {
            this.lower = (float) (1.0 - spec.clipRatioLow());
            this.upper = (float) (1.0 + spec.clipRatioHigh());
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float nakl = clampedLogRatio(lp, old);
            final float ratio = CanonicalMath.exp(nakl);
            final float clipped = TorchOps.clamp(ratio, lower, upper);
            final float coef = -clipped * a;
            out.loss = coef * lp;
            out.grad = coef;
            out.ratio = ratio;
            out.kl = -nakl;
            out.clipped = ratio != clipped;
            out.lower = false;
            out.clippedLow = a < 0f && ratio < lower;
            out.clippedHigh = a > 0f && ratio > upper;
        }
    }

    /** {@code dro}: pg_losses = -(log_prob * A - 0.5 * beta * (log_prob - old_log_prob)^2), no clamp. */
    static final class Dro extends TokenRule {
        private final float halfBeta;

        Dro(final LossSpec spec) {
            this.halfBeta = (float) (0.5 * spec.droBeta());
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float raw = lp - old;
            // verl's unclamped square, except where it overflows (then the log-ratio clamped to [-20, 20]).
            final float lr = overflows(-(lp * a - halfBeta * (raw * raw)), a, raw)
                ? TorchOps.clamp(raw, LOG_RATIO_MIN, LOG_RATIO_MAX) : raw;
            out.loss = -(lp * a - halfBeta * (lr * lr));
            out.grad = -(a - halfBeta * (2f * lr));
            out.ratio = CanonicalMath.exp(TorchOps.clamp(raw, LOG_RATIO_MIN, LOG_RATIO_MAX));
            out.kl = -raw;
            out.clipped = false;
            out.lower = false;
            out.clippedLow = false;
            out.clippedHigh = false;
        }
    }

    /**
     * {@code gspo}: the sequence ratio s = exp(min(log_prob - sg(log_prob) + sg(seq), 10)), seq = the sequence's
     * mean unclamped log-ratio; pg_losses = max(-A s, -A clamp(s, 1 - low, 1 + high)), no dual clip.
     */
    public static final class Gspo extends TokenRule {
        /** verl's clamp of the sequence log-ratio. */
        public static final float LOG_SEQ_MAX = 10f;
        private final float lower;
        private final float upper;

        Gspo(final LossSpec spec) {
            this.lower = (float) (1.0 - spec.clipRatioLow());
            this.upper = (float) (1.0 + spec.clipRatioHigh());
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float logSeq = (lp - lp) + sequence;
            final float s = CanonicalMath.exp(logSeq > LOG_SEQ_MAX ? LOG_SEQ_MAX : logSeq);
            final float negA = -a;
            final float pg1 = negA * s;
            final float pg2 = negA * TorchOps.clamp(s, lower, upper);
            out.loss = TorchOps.maximum(pg1, pg2);
            final float shares = TorchOps.maxShare(pg1, pg2)
                + (TorchOps.clampPasses(s, lower, upper) ? TorchOps.maxShare(pg2, pg1) : 0f);
            out.grad = logSeq <= LOG_SEQ_MAX ? (negA * shares) * s : 0f;
            out.ratio = s;
            out.kl = -(lp - old);
            out.clipped = pg2 > pg1;
            out.lower = false;
            out.clippedLow = a < 0f && s < lower;
            out.clippedHigh = a > 0f && s > upper;
        }
    }

    /**
     * {@code kl_cov}: pg_losses = -A ratio (ratio = exp(log-ratio), unclamped), plus ppo_kl_coef |log-ratio| at the
     * selected tokens (the top covariances, {@link Selection#klCov}); ppo_kl is the mean |log-ratio|.
     */
    static final class KlCov extends TokenRule {
        private final float coef;

        KlCov(final LossSpec spec) {
            this.coef = (float) spec.ppoKlCoef();
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float nakl = lp - old;
            final float ratio = overflowSafeRatio(a, nakl);
            final float base = -a * ratio;
            final float abs = Math.abs(nakl);
            out.loss = flag ? base + coef * abs : base;
            final float sign = nakl > 0f ? 1f : (nakl < 0f ? -1f : nakl);
            out.grad = flag ? base + coef * sign : base;
            out.ratio = ratio;
            out.kl = abs;
            out.clipped = false;
            out.lower = false;
            out.clippedLow = false;
            out.clippedHigh = false;
        }
    }

    /**
     * {@code clip_cov}: pg_losses = max(-A ratio, -A clamp(ratio, 1 - low, 1 + high)) * corr, ratio unclamped,
     * corr = 0 at the selected tokens ({@link Selection#clipCov}); pg_clipfrac counts them.
     */
    static final class ClipCov extends TokenRule {
        private final float lower;
        private final float upper;

        ClipCov(final LossSpec spec) {
            this.lower = (float) (1.0 - spec.clipRatioLow());
            this.upper = (float) (1.0 + spec.clipRatioHigh());
        }

        @Override
        public void token(final float lp, final float old, final float a, final float sequence, final boolean flag,
                          final Token out) {
            final float nakl = lp - old;
            final float ratio = overflowSafeRatio(a, nakl);
            final float negA = -a;
            final float pg1 = negA * ratio;
            final float pg2 = negA * TorchOps.clamp(ratio, lower, upper);
            final float corr = flag ? 0f : 1f;
            out.loss = TorchOps.maximum(pg1, pg2) * corr;
            final float shares = TorchOps.maxShare(pg1, pg2)
                + (TorchOps.clampPasses(ratio, lower, upper) ? TorchOps.maxShare(pg2, pg1) : 0f);
            out.grad = ((negA * shares) * ratio) * corr;
            out.ratio = ratio;
            out.kl = -nakl;
            out.clipped = flag;
            out.lower = false;
            out.clippedLow = a < 0f && ratio < lower;
            out.clippedHigh = a > 0f && ratio > upper;
        }
    }
}
