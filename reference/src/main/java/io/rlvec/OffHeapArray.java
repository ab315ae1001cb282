package io.rlvec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;

import org.agrona.concurrent.UnsafeBuffer;

/**
 * A flat, off-heap array of float32, bf16 or int32 elements on 64-byte aligned memory.
 *
 * <p>Owners ({@link #allocate}, {@link #of(float...)}) free their memory on {@link #close()}; views
 * ({@link #wrap}) never free. Kernels read through {@link #segment()}, a global-scope {@link MemorySegment} over
 * the same bytes, and through {@link #buffer()}, an Agrona {@link UnsafeBuffer} (for arrays below 2 GiB).
 * Element accessors check bounds; kernels never call them on the hot path.
 */
public final class OffHeapArray implements AutoCloseable {
    /** Alignment of every allocation, in bytes (one cache line; style.md P9). */
    public static final int ALIGNMENT = 64;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final ElementType type;
    private final long length;
    private final MemorySegment segment;
    private final Arena arena;
    private UnsafeBuffer buffer;
    private boolean closed;

    private OffHeapArray(final ElementType type, final long length, final MemorySegment segment, final Arena arena) {
        this.type = type;
        this.length = length;
        this.segment = segment;
        this.arena = arena;
    }

    /**
     * Allocates zeroed, 64-byte aligned memory for {@code length} elements.
     *
     * @param type   element type.
     * @param length number of elements, {@code >= 0}.
     * @return the owner of the new memory.
     */
    public static OffHeapArray allocate(final ElementType type, final long length) {
        Objects.requireNonNull(type, "type");
        if (length < 0) {
            throw new IllegalArgumentException("length must be >= 0, got " + length);
        }
        final long bytes = Math.max(1L, byteSize("length", type, length));
        final Arena arena = Arena.ofShared();
        try {
            return new OffHeapArray(type, length, arena.allocate(bytes, ALIGNMENT), arena);
        } catch (final OutOfMemoryError | IllegalArgumentException e) {
            arena.close();
            throw new IllegalArgumentException("cannot allocate " + length + " " + type + " elements (" + bytes
                + " bytes): " + e.getMessage(), e);
        }
    }

    /**
     * @return {@code length * type.bytes()}, checked.
     * @throws IllegalArgumentException naming {@code what} when the product overflows a long.
     */
    static long byteSize(final String what, final ElementType type, final long length) {
        try {
            return Math.multiplyExact(length, (long) type.bytes());
        } catch (final ArithmeticException e) {
            throw new IllegalArgumentException(what + " " + length + " of " + type + " elements is "
                + "more bytes than a long holds (at most " + Long.MAX_VALUE / type.bytes() + " elements)");
        }
    }

    /** @return a new float32 owner holding a copy of {@code values}. */
    public static OffHeapArray of(final float... values) {
        final OffHeapArray a = allocate(ElementType.F32, values.length);
        MemorySegment.copy(values, 0, a.segment, F32, 0, values.length);
        return a;
    }

    /** @return a new int32 owner holding a copy of {@code values}. */
    public static OffHeapArray ofInts(final int... values) {
        final OffHeapArray a = allocate(ElementType.I32, values.length);
        MemorySegment.copy(values, 0, a.segment, I32, 0, values.length);
        return a;
    }

    /** @return a new int64 owner holding a copy of {@code values}. */
    public static OffHeapArray ofLongs(final long... values) {
        final OffHeapArray a = allocate(ElementType.I64, values.length);
        MemorySegment.copy(values, 0, a.segment, I64, 0, values.length);
        return a;
    }

    /** @return a new bf16 owner holding {@code values} rounded to nearest-even bf16. */
    public static OffHeapArray ofBf16(final float... values) {
        final OffHeapArray a = allocate(ElementType.BF16, values.length);
        for (int i = 0; i < values.length; i++) {
            a.setFloat(i, values[i]);
        }
        return a;
    }

    /**
     * Wraps existing memory without copying and without taking ownership (a memory-mapped file, a caller's
     * arena). The segment must stay alive while the view is used.
     *
     * @param type    element type.
     * @param segment memory holding at least {@code length} elements.
     * @param length  number of elements.
     * @return a non-owning view.
     */
    public static OffHeapArray wrap(final ElementType type, final MemorySegment segment, final long length) {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(segment, "segment");
        if (length < 0) {
            throw new IllegalArgumentException("length must be >= 0, got " + length);
        }
        final long bytes = byteSize("length", type, length);
        if (bytes > segment.byteSize()) {
            throw new IllegalArgumentException("segment of " + segment.byteSize() + " bytes cannot hold " + length
                + " " + type + " elements");
        }
        if (!segment.isNative()) {
            throw new IllegalArgumentException("segment must be native (off-heap or mapped) memory");
        }
        if (!segment.scope().isAlive()) {
            throw new IllegalArgumentException("segment's memory has been freed (its arena is closed)");
        }
        // A slice keeps the caller's scope: every access checks that the memory is still alive, so memory freed
        // before or during a call gives an IllegalStateException, never a read of freed memory.
        return new OffHeapArray(type, length, segment.asSlice(0, bytes), null);
    }

    /** Wraps an Agrona buffer over off-heap memory without copying. */
    public static OffHeapArray wrap(final ElementType type, final UnsafeBuffer buffer) {
        Objects.requireNonNull(buffer, "buffer");
        if (buffer.byteArray() != null) {
            throw new IllegalArgumentException("buffer must wrap off-heap memory, not a byte[]");
        }
        final long len = buffer.capacity() / type.bytes();
        return new OffHeapArray(type, len, globalView(buffer.addressOffset(), Math.max(1L, len * type.bytes())), null);
    }

    @SuppressWarnings("restricted")
    private static MemorySegment globalView(final long address, final long bytes) {
        // A global-scope view: no thread-confinement or liveness check on the kernel path (style.md P14).
        return MemorySegment.ofAddress(address).reinterpret(bytes);
    }

    /** @return element type. */
    public ElementType type() {
        return type;
    }

    /** @return number of elements. */
    public long length() {
        return length;
    }

    /** @return size in bytes of the elements. */
    public long byteSize() {
        return length * type.bytes();
    }

    /** @return the base address of the first element. */
    public long address() {
        return segment.address();
    }

    /**
     * @return a segment over exactly the elements' bytes, with the scope of the memory's owner (this array's
     *         arena, or the wrapped segment's): kernels read through it, so freed memory is never read.
     */
    public MemorySegment segment() {
        return segment;
    }

    /**
     * @return an Agrona view of the same memory.
     * @throws IllegalStateException when the array is 2 GiB or larger (Agrona capacities are ints).
     */
    public UnsafeBuffer buffer() {
        UnsafeBuffer b = buffer;
        if (b == null) {
            if (byteSize() > Integer.MAX_VALUE) {
                throw new IllegalStateException("array of " + byteSize() + " bytes exceeds an UnsafeBuffer's 2 GiB");
            }
            b = new UnsafeBuffer(address(), (int) byteSize());
            buffer = b;
        }
        return b;
    }

    /** @return element {@code i} widened to float (F32 or BF16 arrays). */
    public float getFloat(final long i) {
        checkIndex(i);
        return switch (type) {
            case F32 -> segment.get(F32, i * 4);
            case BF16 -> Float.intBitsToFloat((segment.get(I16, i * 2) & 0xFFFF) << 16);
            case I32, I64 -> throw new IllegalStateException("getFloat on an " + type + " array");
        };
    }

    /** Stores {@code v} at {@code i} (F32 as is, BF16 rounded to nearest even). */
    public void setFloat(final long i, final float v) {
        checkIndex(i);
        switch (type) {
            case F32 -> segment.set(F32, i * 4, v);
            case BF16 -> segment.set(I16, i * 2, Bf16.fromFloat(v));
            case I32, I64 -> throw new IllegalStateException("setFloat on an " + type + " array");
        }
    }

    /** @return int element {@code i} (I32 arrays). */
    public int getInt(final long i) {
        checkIndex(i);
        if (type != ElementType.I32) {
            throw new IllegalStateException("getInt on a " + type + " array");
        }
        return segment.get(I32, i * 4);
    }

    /** Stores int {@code v} at {@code i} (I32 arrays). */
    public void setInt(final long i, final int v) {
        checkIndex(i);
        if (type != ElementType.I32) {
            throw new IllegalStateException("setInt on a " + type + " array");
        }
        segment.set(I32, i * 4, v);
    }

    /** @return long element {@code i} (I64 arrays). */
    public long getLong(final long i) {
        checkIndex(i);
        if (type != ElementType.I64) {
            throw new IllegalStateException("getLong on a " + type + " array");
        }
        return segment.get(I64, i * 8);
    }

    /** Fills every element with float {@code v}. */
    public void fill(final float v) {
        for (long i = 0; i < length; i++) {
            setFloat(i, v);
        }
    }

    /** @return a heap copy of the elements as floats. */
    public float[] toFloatArray() {
        if (length > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("too long for a float[]: " + length);
        }
        final float[] out = new float[(int) length];
        if (type == ElementType.F32) {
            MemorySegment.copy(segment, F32, 0, out, 0, out.length);
        } else {
            for (int i = 0; i < out.length; i++) {
                out[i] = getFloat(i);
            }
        }
        return out;
    }

    /** @return a heap copy of the elements as ints (I32 arrays). */
    public int[] toIntArray() {
        if (type != ElementType.I32) {
            throw new IllegalStateException("toIntArray on a " + type + " array");
        }
        final int[] out = new int[(int) length];
        MemorySegment.copy(segment, I32, 0, out, 0, out.length);
        return out;
    }

    /** @return whether this object frees its memory on close. */
    public boolean isOwner() {
        return arena != null;
    }

    private void checkIndex(final long i) {
        if (isClosed()) {
            throw new IllegalStateException("array is closed");
        }
        if (i < 0 || i >= length) {
            throw new IndexOutOfBoundsException("index " + i + " outside [0, " + length + ")");
        }
    }

    /** Frees owned memory; a view only forgets it. Idempotent. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            if (arena != null) {
                arena.close();
            }
        }
    }

    /**
     * @return whether {@link #close()} has been called, or the memory it views has been freed (a wrapped
     *         segment whose arena was closed).
     */
    public boolean isClosed() {
        return closed || !segment.scope().isAlive();
    }

    @Override
    public String toString() {
        return "OffHeapArray[" + type + " x " + length + (arena != null ? ", owner" : ", view") + "]";
    }
}
