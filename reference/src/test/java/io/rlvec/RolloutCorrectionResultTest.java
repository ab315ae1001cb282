package io.rlvec;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** Merging bypass_mode's rollout_corr metrics over micro-batches, as verl's trainer reduces them. */
class RolloutCorrectionResultTest {
    private static final String MAX = RolloutCorrectionResult.PREFIX + "rollout_is_max";
    private static final String MIN = RolloutCorrectionResult.PREFIX + "rollout_is_min";
    private static final String MEAN = RolloutCorrectionResult.PREFIX + "rollout_is_mean";

    private static RolloutCorrectionResult call(final double max, final double min, final double mean) {
        final RolloutCorrectionResult r = new RolloutCorrectionResult();
        r.put(RolloutCorrectionResult.indexOf(MEAN), mean);
        r.put(RolloutCorrectionResult.indexOf(MAX), max);
        r.put(RolloutCorrectionResult.indexOf(MIN), min);
        return r;
    }

    @Test
    void maxKeysTakeTheLargestMinKeysTheSmallestAndTheRestTheMeanOverCalls() {
        final RolloutCorrectionResult merged = new RolloutCorrectionResult();
        assertThat(merged.parts()).isZero();
        merged.merge(call(2.0, 0.5, 1.0));
        assertThat(merged.parts()).isEqualTo(1);
        final RolloutCorrectionResult pair = new RolloutCorrectionResult();
        pair.merge(call(3.0, 0.7, 2.0));
        pair.merge(call(1.5, 0.2, 6.0));
        assertThat(pair.get(MEAN)).isEqualTo(4.0);
        // A merged pair counts as its two calls: the mean over three calls is (1 + 2 + 6) / 3.
        merged.merge(pair);
        assertThat(merged.parts()).isEqualTo(3);
        assertThat(merged.get(MAX)).isEqualTo(3.0);
        assertThat(merged.get(MIN)).isEqualTo(0.2);
        assertThat(merged.get(MEAN)).isEqualTo(3.0);
        assertThat(merged.keys()).containsExactly(MEAN, MAX, MIN);
        merged.merge(new RolloutCorrectionResult());
        assertThat(merged.parts()).isEqualTo(3);
        merged.merge(call(Double.NaN, 0.1, 3.0));
        assertThat(merged.get(MAX)).isNaN();
        assertThat(merged.get(MIN)).isEqualTo(0.1);
        merged.reset();
        assertThat(merged.parts()).isZero();
        assertThat(merged.size()).isZero();
    }

    @Test
    void policyLossResultsMergeTheirBypassMetrics() {
        final PolicyLossResult a = new PolicyLossResult();
        a.bypass(call(2.0, 0.5, 1.0), false, 0.0);
        final PolicyLossResult b = new PolicyLossResult();
        b.bypass(call(4.0, 0.25, 3.0), false, 0.0);
        final PolicyLossResult merged = new PolicyLossResult();
        merged.merge(a);
        merged.merge(b);
        assertThat(merged.metrics()).containsEntry(MAX, 4.0).containsEntry(MIN, 0.25).containsEntry(MEAN, 2.0);
    }
}
