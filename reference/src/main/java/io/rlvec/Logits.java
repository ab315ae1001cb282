package io.rlvec;

import java.util.Objects;

/**
 * A view of {@code rows} rows of {@code vocab} logits (float32, or bf16 widened on read) in an
 * {@link OffHeapArray}, row {@code r} starting at element {@code r * rowStride}. Nothing is copied; the view is
 * validated once, here, so that kernels can run raw loops over it.
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
     * @param data  F32 or BF16 elements, rows back to back.
     * @param rows  number of rows, {@code >= 0}.
     * @param vocab logits per row, {@code >= 1}.
     * @return a view with {@code rowStride == vocab}.
     * @throws IllegalArgumentException when the type is not F32/BF16 or the data is too short.
     */
    public static Logits of(final OffHeapArray data, final int rows, final int vocab) {
        return of(data, rows, vocab, vocab);
    }

    /**
     * @param data      F32 or BF16 elements.
     * @param rows      number of rows, {@code >= 0}.
     * @param vocab     logits per row, {@code >= 1}.
     * @param rowStride elements from the start of one row to the next, {@code >= vocab}.
     * @return the view.
     * @throws IllegalArgumentException naming the argument and the expected range.
     */
    public static Logits of(final OffHeapArray data, final int rows, final int vocab, final long rowStride) {
        Objects.requireNonNull(data, "data");
        if (data.type() != ElementType.F32 && data.type() != ElementType.BF16) {
            throw new IllegalArgumentException("logits data must be F32 or BF16, got " + data.type());
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
        if (data.length() < needed) {
            throw new IllegalArgumentException("logits data holds " + data.length() + " elements, " + rows + " rows of "
                + vocab + " with row stride " + rowStride + " need " + needed);
        }
        return new Logits(data, rows, vocab, rowStride);
    }

    /** @return elements spanned by {@code rows} rows: {@code (rows - 1) * rowStride + vocab}, 0 for no rows. */
    public static long requiredLength(final int rows, final int vocab, final long rowStride) {
        return rows == 0 ? 0 : Math.addExact(Math.multiplyExact(rows - 1L, rowStride), vocab);
    }

    /** @return the underlying array. */
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

    /** @return elements between the starts of consecutive rows. */
    public long rowStride() {
        return rowStride;
    }

    /** @return the element type (F32 or BF16). */
    public ElementType type() {
        return data.type();
    }

    @Override
    public String toString() {
        return "Logits[" + rows + " x " + vocab + ", stride " + rowStride + ", " + type() + "]";
    }
}
