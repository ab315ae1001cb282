package io.rlvec.reference;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/**
 * {@link TorchOps#clamp} against torch.clamp's documented results: {@code min(max(x, lo), hi)}, so NaN stays NaN,
 * -0 stays -0 (a compare, not a sign-aware max), and with lo &gt; hi every value becomes hi (torch: "If min is
 * greater than max torch.clamp(..., min, max) sets all elements in input to the value of max").
 */
class TorchOpsTest {

    private static int bits(final float x) {
        return Float.floatToRawIntBits(x);
    }

    @Test
    void clampWithOrderedBounds() {
        assertThat(TorchOps.clamp(-3f, -1f, 2f)).isEqualTo(-1f);
        assertThat(TorchOps.clamp(0.5f, -1f, 2f)).isEqualTo(0.5f);
        assertThat(TorchOps.clamp(7f, -1f, 2f)).isEqualTo(2f);
        assertThat(TorchOps.clamp(Float.POSITIVE_INFINITY, -1f, 2f)).isEqualTo(2f);
        assertThat(TorchOps.clamp(Float.NEGATIVE_INFINITY, -1f, 2f)).isEqualTo(-1f);
        assertThat(TorchOps.clamp(Float.NaN, -1f, 2f)).isNaN();
        assertThat(bits(TorchOps.clamp(-0f, 0f, 1f))).isEqualTo(bits(-0f));
        assertThat(bits(TorchOps.clamp(0f, -0f, 1f))).isEqualTo(bits(0f));
    }

    @Test
    void clampWithTheLowerBoundAboveTheUpperGivesTheUpper() {
        for (final float x : new float[] {-5f, 0.2f, 0.5f, 0.7f, 9f}) {
            assertThat(TorchOps.clamp(x, 0.5f, 0f)).as("clamp(%s, 0.5, 0)", x).isEqualTo(0f);
        }
        assertThat(TorchOps.clamp(Float.NaN, 0.5f, 0f)).isNaN();
    }
}
