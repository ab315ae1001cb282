package io.rlvec.safety;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.rlvec.Checks;
import io.rlvec.LossSpec;
import org.junit.jupiter.api.Test;

/**
 * A temperature that is a valid double but rounds to 0 or Infinity in float32 (where the kernels divide the
 * logits) is refused up front: it would otherwise turn every logit into NaN or Inf.
 */
class TemperatureTest {
    @Test
    void refusedWhenFloat32RoundsItAway() {
        for (final double t : new double[] {1e39, 1e-46, Double.MIN_VALUE, 0.0, -1.0, Double.NaN,
            Double.POSITIVE_INFINITY}) {
            assertThatThrownBy(() -> LossSpec.builder().temperature(t).build()).as("%s", t)
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
            assertThatThrownBy(() -> Checks.temperature(t)).as("%s", t)
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
        }
        assertThat(LossSpec.builder().temperature(1e-30).build().temperature()).isEqualTo(1e-30);
        assertThat(LossSpec.builder().temperature(3e38).build().temperature()).isEqualTo(3e38);
    }
}
