package io.rlvec.reference;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

/**
 * clip_cov's draw spells out java.util.SplittableRandom's generator: the same numbers for every seed and bound
 * (powers of two, small ones, and bounds above 2^30 where the rejection loop draws again), and the same subset
 * and permutation as a shuffle driven by SplittableRandom itself.
 */
class SelectionDrawTest {
    @Test
    void theNumbersAreSplittableRandomsForEveryKindOfBound() {
        final SplittableRandom pick = new SplittableRandom(7);
        int rejected = 0;
        for (int trial = 0; trial < 2000; trial++) {
            final long seed = trial < 3 ? new long[] {0, -1, Long.MIN_VALUE}[trial] : pick.nextLong();
            final SplittableRandom expected = new SplittableRandom(seed);
            int step = 0;
            for (int n = 0; n < 50; n++) {
                final int bound = switch (n % 5) {
                    case 0 -> 1 << pick.nextInt(31);
                    case 1 -> 1 + pick.nextInt(100);
                    case 2 -> (1 << 30) + 1 + pick.nextInt(Integer.MAX_VALUE - (1 << 30));
                    default -> 1 + pick.nextInt(Integer.MAX_VALUE);
                };
                final long next = Selection.nextInt(seed, step, bound);
                rejected += (int) (next >>> 32) - step > 1 ? 1 : 0;
                step = (int) (next >>> 32);
                assertThat((int) next).as("seed %d, number %d, bound %d", seed, n, bound)
                    .isEqualTo(expected.nextInt(bound));
            }
        }
        assertThat(rejected).as("draws that went through the rejection loop").isPositive();
    }

    @Test
    void theSubsetIsTheOneASplittableRandomShufflePicks() {
        final SplittableRandom pick = new SplittableRandom(11);
        for (int trial = 0; trial < 500; trial++) {
            final long seed = pick.nextLong();
            final int m = 1 + pick.nextInt(300);
            final int count = pick.nextInt(m);
            final int[] actual = new int[m];
            final int[] expected = new int[m];
            for (int i = 0; i < m; i++) {
                actual[i] = 3 * i;
                expected[i] = 3 * i;
            }
            final boolean[] actualFlags = new boolean[3 * m];
            final boolean[] expectedFlags = new boolean[3 * m];
            Selection.draw(seed, actual, m, count, actualFlags);
            final SplittableRandom random = new SplittableRandom(seed);
            for (int i = 0; i < count; i++) {
                final int j = i + random.nextInt(m - i);
                final int tmp = expected[i];
                expected[i] = expected[j];
                expected[j] = tmp;
                expectedFlags[expected[i]] = true;
            }
            assertThat(actual).isEqualTo(expected);
            assertThat(actualFlags).isEqualTo(expectedFlags);
        }
    }
}
