package io.rlvec;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A batch of token-level data, flat and off heap: tokens of all sequences back to back, sequence {@code i}
 * occupying {@code [offset(i), offset(i+1))}, one float32 per token per {@link Column}.
 *
 * <p>A padded {@code (B, T)} batch is the case {@code offset(i) = i*T} with {@link #paddedWidth()} {@code = T};
 * a packed (ragged) batch has {@code paddedWidth() == 0} and wastes nothing on padding. The response mask is
 * always present (all ones when the builder was given none); a token counts where it is non-zero, and tokens
 * outside the mask never influence any result, whatever they hold (NaN and Inf included).
 *
 * <p>The batch validates its shape once, at {@link Builder#build()}. Columns wrapped from caller memory may be
 * refilled between calls; the batch owns (and frees on {@link #close()}) only what its builder allocated.
 */
public final class TokenBatch implements AutoCloseable {
    private final int[] offsets;
    private final int paddedWidth;
    private final OffHeapArray[] columns;
    private final List<OffHeapArray> owned;

    private TokenBatch(final int[] offsets, final int paddedWidth, final OffHeapArray[] columns,
                       final List<OffHeapArray> owned) {
        this.offsets = offsets;
        this.paddedWidth = paddedWidth;
        this.columns = columns;
        this.owned = owned;
    }

    /** @return a builder for a padded {@code (batch, width)} batch. */
    public static Builder padded(final int batch, final int width) {
        if (batch < 0) {
            throw new IllegalArgumentException("batch must be >= 0, got " + batch);
        }
        if (width < 1) {
            throw new IllegalArgumentException("width (response_length) must be >= 1, got " + width);
        }
        if ((long) batch * width > Integer.MAX_VALUE - 64) {
            throw new IllegalArgumentException("batch*width = " + (long) batch * width + " tokens exceeds the int range");
        }
        final int[] off = new int[batch + 1];
        for (int i = 0; i <= batch; i++) {
            off[i] = i * width;
        }
        return new Builder(off, width);
    }

    /** @return a builder for a packed batch whose sequences have the given token counts. */
    public static Builder packed(final int... lengths) {
        Objects.requireNonNull(lengths, "lengths");
        final int[] off = new int[lengths.length + 1];
        long total = 0;
        for (int i = 0; i < lengths.length; i++) {
            if (lengths[i] < 0) {
                throw new IllegalArgumentException("lengths[" + i + "] must be >= 0, got " + lengths[i]);
            }
            total += lengths[i];
            if (total > Integer.MAX_VALUE - 64) {
                throw new IllegalArgumentException("total token count exceeds the int range");
            }
            off[i + 1] = (int) total;
        }
        return new Builder(off, 0);
    }

    /**
     * @param offsets sequence boundaries {@code offsets[0..B]}: {@code offsets[0] == 0}, non-decreasing.
     * @return a builder for a packed batch with these boundaries.
     */
    public static Builder withOffsets(final int... offsets) {
        Objects.requireNonNull(offsets, "offsets");
        return new Builder(offsets.clone(), 0);
    }

    /** @return number of sequences B. */
    public int numSequences() {
        return offsets.length - 1;
    }

    /** @return number of token slots N (valid or not). */
    public int numTokens() {
        return offsets[offsets.length - 1];
    }

    /** @return start of sequence {@code i} (i in [0, B]; {@code offset(B) == numTokens()}). */
    public int offset(final int i) {
        return offsets[i];
    }

    /** @return T for a padded batch, 0 for a packed one. */
    public int paddedWidth() {
        return paddedWidth;
    }

    /** @return whether this batch was built as padded {@code (B, T)}. */
    public boolean isPadded() {
        return paddedWidth > 0;
    }

    /** @return the column, or null when absent. */
    public OffHeapArray column(final Column c) {
        return columns[c.ordinal()];
    }

    /** @return whether the column is present. */
    public boolean has(final Column c) {
        return columns[c.ordinal()] != null;
    }

    /**
     * @param c    the column a term needs.
     * @param term the term, for the message.
     * @return the column.
     * @throws IllegalArgumentException naming the column and the term when it is absent.
     */
    public OffHeapArray require(final Column c, final String term) {
        final OffHeapArray a = columns[c.ordinal()];
        if (a == null) {
            throw new IllegalArgumentException(term + " needs column '" + c.verlName() + "' (" + numTokens()
                + " float32 values), which this batch does not have");
        }
        return a;
    }

    /** @return the response mask column (always present). */
    public OffHeapArray mask() {
        return columns[Column.RESPONSE_MASK.ordinal()];
    }

    /** Frees the columns this batch allocated; wrapped columns are left alone. */
    @Override
    public void close() {
        for (final OffHeapArray a : owned) {
            a.close();
        }
    }

    @Override
    public String toString() {
        return "TokenBatch[B=" + numSequences() + ", N=" + numTokens()
            + (isPadded() ? ", padded T=" + paddedWidth : ", packed") + "]";
    }

    /** Collects columns, then validates everything once in {@link #build()}. */
    public static final class Builder {
        private final int[] offsets;
        private final int paddedWidth;
        private final Map<Column, OffHeapArray> columns = new EnumMap<>(Column.class);
        private final Map<Column, Boolean> ownedFlags = new EnumMap<>(Column.class);

        private Builder(final int[] offsets, final int paddedWidth) {
            this.offsets = offsets;
            this.paddedWidth = paddedWidth;
        }

        /** Copies {@code values} (one per token) into a new off-heap column. */
        public Builder column(final Column c, final float[] values) {
            Objects.requireNonNull(c, "column");
            Objects.requireNonNull(values, c.verlName());
            put(c, OffHeapArray.of(values), true);
            return this;
        }

        /** Uses caller memory (float32, at least numTokens elements) as a column, without copying. */
        public Builder column(final Column c, final OffHeapArray values) {
            Objects.requireNonNull(c, "column");
            Objects.requireNonNull(values, c.verlName());
            put(c, values, false);
            return this;
        }

        /** Sets the response mask from booleans. */
        public Builder mask(final boolean[] valid) {
            Objects.requireNonNull(valid, "response_mask");
            final float[] f = new float[valid.length];
            for (int i = 0; i < f.length; i++) {
                f[i] = valid[i] ? 1f : 0f;
            }
            return column(Column.RESPONSE_MASK, f);
        }

        /** Sets the response mask from 0/1 bytes. */
        public Builder mask(final byte[] valid) {
            Objects.requireNonNull(valid, "response_mask");
            final float[] f = new float[valid.length];
            for (int i = 0; i < f.length; i++) {
                f[i] = valid[i] != 0 ? 1f : 0f;
            }
            return column(Column.RESPONSE_MASK, f);
        }

        private void put(final Column c, final OffHeapArray a, final boolean own) {
            final OffHeapArray prev = columns.put(c, a);
            if (prev != null && Boolean.TRUE.equals(ownedFlags.get(c))) {
                prev.close();
            }
            ownedFlags.put(c, own);
        }

        /**
         * Validates offsets and column capacities and returns the batch.
         *
         * @throws IllegalArgumentException naming the offending argument and what was expected.
         */
        public TokenBatch build() {
            if (offsets.length < 1) {
                throw new IllegalArgumentException("offsets must have B+1 >= 1 entries");
            }
            if (offsets[0] != 0) {
                throw new IllegalArgumentException("offsets[0] must be 0, got " + offsets[0]);
            }
            for (int i = 1; i < offsets.length; i++) {
                if (offsets[i] < offsets[i - 1]) {
                    throw new IllegalArgumentException("offsets must be non-decreasing: offsets[" + i + "] = "
                        + offsets[i] + " < offsets[" + (i - 1) + "] = " + offsets[i - 1]);
                }
            }
            final int n = offsets[offsets.length - 1];
            final List<OffHeapArray> own = new ArrayList<>();
            final OffHeapArray[] cols = new OffHeapArray[Column.values().length];
            try {
                for (final Map.Entry<Column, OffHeapArray> e : columns.entrySet()) {
                    final OffHeapArray a = e.getValue();
                    if (a.type() != ElementType.F32) {
                        throw new IllegalArgumentException("column '" + e.getKey().verlName()
                            + "' must be F32, got " + a.type());
                    }
                    if (a.isClosed()) {
                        throw new IllegalArgumentException("column '" + e.getKey().verlName() + "' is closed");
                    }
                    if (a.length() < n) {
                        throw new IllegalArgumentException("column '" + e.getKey().verlName() + "' has "
                            + a.length() + " values, the batch needs " + n + " (offsets[B])");
                    }
                    cols[e.getKey().ordinal()] = a;
                    if (Boolean.TRUE.equals(ownedFlags.get(e.getKey()))) {
                        own.add(a);
                    }
                }
                if (cols[Column.RESPONSE_MASK.ordinal()] == null) {
                    final OffHeapArray ones = OffHeapArray.allocate(ElementType.F32, n);
                    ones.fill(1f);
                    cols[Column.RESPONSE_MASK.ordinal()] = ones;
                    own.add(ones);
                }
            } catch (final RuntimeException ex) {
                for (final Map.Entry<Column, OffHeapArray> e : columns.entrySet()) {
                    if (Boolean.TRUE.equals(ownedFlags.get(e.getKey()))) {
                        e.getValue().close();
                    }
                }
                throw ex;
            }
            return new TokenBatch(offsets, paddedWidth, cols, own);
        }
    }
}
