package io.rlvec.reference;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;

/**
 * The analytic gradient d pg_loss / d log_prob of every policy-loss mode against central finite differences of the
 * loss, on small smooth cases: log-ratios within +-0.1 (inside every clip band, away from the dual clip and the
 * +-20 clamp), advantages of distinct magnitudes (kl_cov's top-k and clip_cov's candidates stay put under the
 * perturbation), ragged rows and a masked tail. Float32 losses of O(0.1) make the central difference with h =
 * 2^-7 accurate to about ulp / h + h^2 |f'''|, a few 1e-5; the bound is 3e-3 of the largest gradient plus 2e-5.
 *
 * <p>Only the modes whose loss has no stop-gradient: gspo ({@code log_prob - sg(log_prob) + sg(seq)}), cispo
 * ({@code sg(clamp(ratio))}), dppo_tv and dppo_kl ({@code sg} of the truncated ratio and the trust mask) and
 * bypass_mode (detached IS weights) differentiate a surrogate whose frozen factors a difference of the loss cannot
 * hold still (measured here: gspo's analytic -0.0171 against a finite difference of -0.0214, cispo's -0.0181 against
 * +0.0177). Their gradients are autograd's, checked against verl's own (golden) gradients instead.
 */
class PolicyModeFiniteDifferenceTest {
    private static final int B = 3;
    private static final int T = 6;
    private static final float H = 0x1p-7f;

    private final ReferenceEngine engine = new ReferenceEngine();

    private static LossSpec spec(final PolicyLossMode mode, final AggMode agg) {
        final LossSpec.Builder b = LossSpec.builder().policyLossMode(mode).lossAggMode(agg).droBeta(0.1)
            .clipCovRatio(0.1).klCovRatio(0.1);
        return b.build();
    }

    private float loss(final LossSpec spec, final float[] lp, final float[] old, final float[] adv,
                       final float[] mask, final float[] grad) {
        try (TokenBatch batch = TokenBatch.padded(B, T).column(Column.LOG_PROB, lp).column(Column.OLD_LOG_PROB, old)
                 .column(Column.ADVANTAGES, adv).column(Column.RESPONSE_MASK, mask).build();
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, B * T)) {
            final PolicyLossResult r = new PolicyLossResult();
            engine.policyLoss(spec, batch, grad == null ? null : g, r);
            if (grad != null) {
                System.arraycopy(g.toFloatArray(), 0, grad, 0, B * T);
            }
            return r.pgLoss();
        }
    }

    @ParameterizedTest
    @EnumSource(value = PolicyLossMode.class, names = {"VANILLA", "SAPO", "GPG", "CLIP_COV", "KL_COV", "GEO_MEAN",
        "DRO"})
    void analyticGradientMatchesCentralDifferences(final PolicyLossMode mode) {
        for (final AggMode agg : new AggMode[] {AggMode.TOKEN_MEAN, AggMode.SEQ_MEAN_TOKEN_MEAN}) {
            final SplittableRandom rnd = new SplittableRandom(31 + mode.ordinal());
            final float[] lp = new float[B * T];
            final float[] old = new float[B * T];
            final float[] adv = new float[B * T];
            final float[] mask = new float[B * T];
            final int[] valid = {6, 4, 5};
            for (int s = 0; s < B; s++) {
                // Distinct advantage magnitudes per row, both signs.
                final float a = (s % 2 == 0 ? 1f : -1f) * (0.3f + 0.4f * s);
                for (int t = 0; t < T; t++) {
                    final int i = s * T + t;
                    old[i] = (float) (-0.5 - 1.5 * rnd.nextDouble());
                    lp[i] = old[i] + (float) (0.2 * rnd.nextDouble() - 0.1);
                    adv[i] = t < valid[s] ? a * (1f + 0.1f * t) : 0f;
                    mask[i] = t < valid[s] ? 1f : 0f;
                }
            }
            final LossSpec spec = spec(mode, agg);
            final float[] grad = new float[B * T];
            loss(spec, lp, old, adv, mask, grad);
            double max = 0;
            for (final float g : grad) {
                max = Math.max(max, Math.abs(g));
            }
            assertThat(max).as("%s %s: some gradient", mode, agg).isGreaterThan(0);
            for (int i = 0; i < B * T; i++) {
                final float[] up = lp.clone();
                final float[] down = lp.clone();
                up[i] += H;
                down[i] -= H;
                final double fd = ((double) loss(spec, up, old, adv, mask, null)
                    - loss(spec, down, old, adv, mask, null)) / ((double) up[i] - down[i]);
                assertThat(Math.abs(fd - grad[i])).as("%s %s token %d: analytic %s, finite difference %s", mode, agg,
                    i, grad[i], fd).isLessThanOrEqualTo(3e-3 * max + 2e-5);
            }
        }
    }
}
