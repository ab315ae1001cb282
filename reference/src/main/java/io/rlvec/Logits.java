package io.rlvec;

/**
 * An immutable view of {@code rows} rows of {@code vocab} logits each, float32 or bf16, in an {@link OffHeapArray}:
 * row {@code r} starts at element {@code r * rowStride}, and its elements {@code [0, vocab)} are the logits (the
 * {@code rowStride - vocab} elements after them are padding, never read or written).
 *
 * <p>The array may exceed 2 GiB: kernels address a row through a {@code long} byte offset
 * ({@link #rowByteOffset(int)}) and loop on {@code int} within the row. Validation happens once here (shape) and
 * once per engine call (liveness), so kernels run raw loops.
 */
public final class Logits {
    private final OffHeapArray data;
    private final int rows;
    private final int vocab;
    private final long rowStride;

    private Logits(final OffHeapArray data, final int rows, final int vocab, final long rowStride) {
        this.data = data;
        this.rows = rows;
        this.vocab = vocab;
        this.rowStride = rowStride;
    }

    /**
     * A view of densely packed rows ({@code rowStride == vocab}).
     *
     * @param data  F32 or BF16 elements, at least {@code rows * vocab} of them.
     * @param rows  number of rows (tokens), {@code >= 0}.
     * @param vocab logits per row, {@code >= 1}.
     * @return the view.
     * @throws IllegalArgumentException naming the argument when a shape or the element type does not fit.
     */
    public static Logits of(final OffHeapArray data, final int rows, final int vocab) {
        return of(data, rows, vocab, vocab);
    }

    /**
     * A view of rows that start {@code rowStride} elements apart.
     *
     * @param data      F32 or BF16 elements, at least {@code (rows - 1) * rowStride + vocab} of them (none for
     *                  {@code rows == 0}).
     * @param rows      number of rows (tokens), {@code >= 0}.
     * @param vocab     logits per row, {@code >= 1}.
     * @param rowStride elements from the start of one row to the next, {@code >= vocab}.
     * @return the view.
     * @throws IllegalArgumentException naming the argument when a shape or the element type does not fit.
     */
    public static Logits of(final OffHeapArray data, final int rows, final int vocab, final long rowStride) {
        if (data == null) {
            throw new IllegalArgumentException("data must not be null (F32 or BF16 logits)");
        }
        if (data.isClosed()) {
            throw new IllegalArgumentException("data is closed");
        }
        if (data.type() != ElementType.F32 && data.type() != ElementType.BF16) {
            throw new IllegalArgumentException("data must be F32 or BF16 logits, got " + data.type());
        }
        if (rows < 0) {
            throw new IllegalArgumentException("rows must be >= 0, got " + rows);
        }
        if (vocab < 1) {
            throw new IllegalArgumentException("vocab must be >= 1, got " + vocab);
        }
        if (rowStride < vocab) {
            throw new IllegalArgumentException("rowStride must be >= vocab (" + vocab + "), got " + rowStride);
        }
        final long needed = requiredLength(rows, vocab, rowStride);
        if (needed < 0) {
            throw new IllegalArgumentException("rows * rowStride overflows: rows " + rows + ", rowStride " + rowStride);
        }
        if (data.length() < needed) {
            throw new IllegalArgumentException("data must hold at least (rows - 1) * rowStride + vocab = " + needed
                + " elements for " + rows + " rows of " + vocab + " (stride " + rowStride + "), has " + data.length());
        }
        return new Logits(data, rows, vocab, rowStride);
    }

    /**
     * @return the number of elements a buffer of this layout must hold: {@code (rows - 1) * rowStride + vocab},
     *     0 for no rows, negative on overflow.
     */
    static long requiredLength(final int rows, final int vocab, final long rowStride) {
        if (rows == 0) {
            return 0;
        }
        final long span;
        try {
            span = Math.addExact(Math.multiplyExact((long) rows - 1, rowStride), vocab);
            Math.multiplyExact(span, 4L);
        } catch (final ArithmeticException e) {
            return -1;
        }
        return span;
    }

    /** @return the elements (F32 or BF16). */
    public OffHeapArray data() {
        return data;
    }

    /** @return number of rows. */
    public int rows() {
        return rows;
    }

    /** @return logits per row. */
    public int vocab() {
        return vocab;
    }

    /** @return elements from one row start to the next. */
    public long rowStride() {
        return rowStride;
    }

    /** @return element type of the logits (F32 or BF16). */
    public ElementType type() {
        return data.type();
    }

    /** @return elements a buffer with this row layout must hold ({@code (rows - 1) * rowStride + vocab}). */
    public long requiredLength() {
        return requiredLength(rows, vocab, rowStride);
    }

    /**
     * @param row a row in {@code [0, rows)} (not checked: kernels call this in their loops).
     * @return byte offset of the row's first logit in {@link #data()}.
     */
    public long rowByteOffset(final int row) {
        return row * rowStride * data.type().bytes();
    }

    @Override
    public String toString() {
        return "Logits[" + rows + " x " + vocab + ", stride " + rowStride + ", " + data.type() + "]";
    }
}
