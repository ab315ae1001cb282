package io.rlvec.testing;

import static org.assertj.core.api.Assertions.assertThat;

import io.rlvec.PolicyLossResult;

/** Comparisons of whole results, with the parity contract's tolerances. */
public final class Results {
    private Results() {
    }

    /**
     * Asserts that two policy-loss results agree: counts exactly (and so every clip fraction and ratio share
     * derived from counts), the loss, its sign split and ppo_kl within {@code maxUlps}.
     */
    public static void assertClose(final PolicyLossResult expected, final PolicyLossResult actual, final long maxUlps,
                                   final String context) {
        assertThat(actual.validTokens()).as("%s: valid_tokens", context).isEqualTo(expected.validTokens());
        assertThat(actual.validSequences()).as("%s: valid_sequences", context).isEqualTo(expected.validSequences());
        assertThat(actual.posTokens()).as("%s: pos_adv_tokens", context).isEqualTo(expected.posTokens());
        assertThat(actual.negTokens()).as("%s: neg_adv_tokens", context).isEqualTo(expected.negTokens());
        for (final PolicyLossResult.Stat s : new PolicyLossResult.Stat[] {PolicyLossResult.Stat.CLIPPED,
            PolicyLossResult.Stat.DUAL_CLIPPED, PolicyLossResult.Stat.POS_RATIO_ABOVE_ONE,
            PolicyLossResult.Stat.NEG_RATIO_ABOVE_ONE, PolicyLossResult.Stat.CLIPPED_LOW,
            PolicyLossResult.Stat.CLIPPED_HIGH}) {
            assertThat(actual.stat(s)).as("%s: count %s", context, s).isEqualTo(expected.stat(s));
        }
        assertThat(actual.denominator()).as("%s: denominator", context).isEqualTo(expected.denominator());
        assertUlps(expected.pgLoss(), actual.pgLoss(), maxUlps, context + ": pg_loss");
        assertUlps(expected.posContribution(), actual.posContribution(), maxUlps, context + ": pg_loss_pos_adv");
        assertUlps(expected.negContribution(), actual.negContribution(), maxUlps, context + ": pg_loss_neg_adv");
        assertUlps(expected.ppoKl(), actual.ppoKl(), maxUlps, context + ": ppo_kl");
        assertThat(actual.pgClipfrac()).as("%s: pg_clipfrac", context).isEqualTo(expected.pgClipfrac());
        assertThat(actual.pgClipfracLower()).as("%s: pg_clipfrac_lower", context)
            .isEqualTo(expected.pgClipfracLower());
        assertThat(actual.clippedFrac()).as("%s: clipfrac_sign", context).isEqualTo(expected.clippedFrac());
    }

    /** Asserts {@code |expected - actual| <= maxUlps} ulps (NaN only equals NaN). */
    public static void assertUlps(final float expected, final float actual, final long maxUlps, final String what) {
        final long d = Ulp.distance(expected, actual);
        assertThat(d).as("%s: expected %s, got %s (%s ulps)", what, Ulp.show(expected), Ulp.show(actual),
            d == Long.MAX_VALUE ? "inf" : Long.toString(d)).isLessThanOrEqualTo(maxUlps);
    }

    /**
     * Asserts per-token bit identity of two gradients ({@link Ulp#sameBits}), reporting the first mismatch.
     */
    public static void assertSameBits(final float[] expected, final float[] actual, final String context) {
        assertThat(actual.length).as("%s: gradient length", context).isEqualTo(expected.length);
        for (int i = 0; i < expected.length; i++) {
            if (!Ulp.sameBits(expected[i], actual[i])) {
                throw new AssertionError(context + ": gradient differs at token " + i + ": expected "
                    + Ulp.show(expected[i]) + ", got " + Ulp.show(actual[i]));
            }
        }
    }
}
