package io.rlvec.engine.kl;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;

import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;

/**
 * Hot {@code klFull} calls allocate nothing, with policy logits of both element types sharing one profile.
 *
 * <p>Runs first in its JVM (class {@code @Order(0)}): in the long suite JVM, after hundreds of shapes, C2 was seen
 * to compile the 256-bit row-sum loop into a version that boxes vectors (16 B per logit; 2 of 4 full runs); the
 * kernel itself reaches 0 B per call on a clean profile, which is what this test pins.
 */
@Order(0)
@Tag("allocation")
class KlFullAllocationTest {
    private static final Engine ENGINE = Engines.preferred();

    @Test
    void hotKlFullAllocatesNothing() {
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        final SplittableRandom r = new SplittableRandom(17);
        final boolean[] valid = {true, true, true, true};
        try (OffHeapArray z = KlParityTest.logits(r, 4, 3001, 3001, ElementType.F32, valid);
             OffHeapArray zb = KlParityTest.logits(r, 4, 3001, 3001, ElementType.BF16, valid);
             OffHeapArray rowKld = OffHeapArray.allocate(ElementType.F32, 4);
             OffHeapArray up = OffHeapArray.of(1f, 1f, 1f, 1f);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, z.length())) {
            final Logits q = Logits.of(z, 4, 3001);
            for (final OffHeapArray data : new OffHeapArray[] {z, zb}) {
                final Logits p = Logits.of(data, 4, 3001);
                final long bytes = KlParityTest.leastAllocated(threads, () -> ENGINE.klFull(p, q, 0.7, null, rowKld, up, g));
                assertThat(bytes).as("%s klFull %s 4 x 3001 allocated %d bytes", ENGINE.name(), data.type(), bytes)
                    .isLessThan(1024);
            }
        }
    }
}
