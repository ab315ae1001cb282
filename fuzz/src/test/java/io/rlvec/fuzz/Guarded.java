package io.rlvec.fuzz;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;

/**
 * Caller buffers with canaries: every buffer is a view into the middle of a larger native segment, with
 * {@link #GUARD} bytes of a known pattern right before its first and right after its last element. {@link #check()}
 * fails when any guard byte changed, i.e. when a call wrote outside a buffer it was given. Guards hold a NaN pattern
 * as floats, so a read past a buffer that leaks into a result shows up as a parity or NaN-policy difference too.
 */
final class Guarded implements AutoCloseable {
    /** Guard bytes on each side (a multiple of 64, so views keep the 64-byte alignment of allocations). */
    static final int GUARD = 128;
    /** The guard pattern's byte at {@code i}: 0x7F, 0xC1, 0x7F, 0xC1 ... (float 0xC17FC17F is -15.98; 0x7FC1 bf16 NaN). */
    private static byte pattern(final long i) {
        return (i & 1) == 0 ? (byte) 0xC1 : (byte) 0x7F;
    }

    private final Arena arena = Arena.ofConfined();
    private final List<MemorySegment> guards = new ArrayList<>();

    /** @return a zeroed, guarded buffer of {@code length} elements (a non-owning view). */
    OffHeapArray alloc(final ElementType type, final long length) {
        final long bytes = length * type.bytes();
        final MemorySegment whole = arena.allocate(GUARD + bytes + GUARD, 64);
        final MemorySegment before = whole.asSlice(0, GUARD);
        final MemorySegment after = whole.asSlice(GUARD + bytes, GUARD);
        for (final MemorySegment g : new MemorySegment[] {before, after}) {
            for (long i = 0; i < GUARD; i++) {
                g.set(ValueLayout.JAVA_BYTE, i, pattern(i));
            }
            guards.add(g);
        }
        return OffHeapArray.wrap(type, whole.asSlice(GUARD, bytes), length);
    }

    /** @return a guarded F32 buffer holding {@code values}. */
    OffHeapArray f32(final float[] values) {
        final OffHeapArray a = alloc(ElementType.F32, values.length);
        for (int i = 0; i < values.length; i++) {
            a.setFloat(i, values[i]);
        }
        return a;
    }

    /** @return a guarded I32 buffer holding {@code values}. */
    OffHeapArray i32(final int[] values) {
        final OffHeapArray a = alloc(ElementType.I32, values.length);
        for (int i = 0; i < values.length; i++) {
            a.setInt(i, values[i]);
        }
        return a;
    }

    /** @throws AssertionError naming the first changed guard byte. */
    void check() {
        for (int k = 0; k < guards.size(); k++) {
            final MemorySegment g = guards.get(k);
            for (long i = 0; i < GUARD; i++) {
                if (g.get(ValueLayout.JAVA_BYTE, i) != pattern(i)) {
                    throw new AssertionError("write outside a caller buffer: guard " + (k % 2 == 0 ? "before" : "after")
                        + " buffer " + k / 2 + ", byte " + i + " changed");
                }
            }
        }
    }

    @Override
    public void close() {
        arena.close();
    }
}
