package io.rlvec.safety;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

/**
 * Sizes at the edges of int and long: every element count whose byte size overflows, or that a segment cannot
 * hold, is refused with a message before any memory is touched (before, {@code allocate(F32, Long.MAX_VALUE)}
 * returned an array of -4 bytes that passed validation and failed inside a kernel). Nothing here allocates what
 * cannot exist.
 */
class SizeLimitsTest {
    @Test
    void byteSizesThatOverflowALongAreRefused() {
        for (final long n : new long[] {Long.MAX_VALUE, 1L << 62, (Long.MAX_VALUE / 4) + 1}) {
            assertThatThrownBy(() -> OffHeapArray.allocate(ElementType.F32, n))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("length " + n)
                .hasMessageContaining("more bytes than a long holds");
        }
        assertThatThrownBy(() -> OffHeapArray.allocate(ElementType.I64, 1L << 61))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("more bytes than a long holds");
        assertThatThrownBy(() -> OffHeapArray.allocate(ElementType.F32, -1))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("length must be >= 0");
    }

    @Test
    void wrappedLengthsBeyondTheSegmentAreRefused() {
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment s = arena.allocate(64);
            for (final long n : new long[] {17, Integer.MAX_VALUE, 1L << 31, 1L << 62, Long.MAX_VALUE}) {
                assertThatThrownBy(() -> OffHeapArray.wrap(ElementType.F32, s, n))
                    .isInstanceOf(IllegalArgumentException.class);
            }
        }
    }

    @Test
    void wrappingFreedMemoryIsRefused() {
        final Arena arena = Arena.ofShared();
        final MemorySegment s = arena.allocate(64);
        final OffHeapArray view = OffHeapArray.wrap(ElementType.F32, s, 16);
        arena.close();
        org.assertj.core.api.Assertions.assertThat(view.isClosed()).isTrue();
        assertThatThrownBy(() -> OffHeapArray.wrap(ElementType.F32, s, 16))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("freed");
        assertThatThrownBy(() -> view.getFloat(0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void batchesPastTheIntRangeAreRefused() {
        assertThatThrownBy(() -> TokenBatch.padded(1 << 16, 1 << 16))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("exceeds the int range");
        assertThatThrownBy(() -> TokenBatch.packed(Integer.MAX_VALUE, Integer.MAX_VALUE))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("int range");
    }
}
