package io.rlvec;

/**
 * Per-row softmax statistics that {@link Engine#logProbs} saves for {@link Engine#logProbsBackward}, as an autograd
 * context saves the normaliser: with them, the backward skips the max pass and the exp-sum pass and evaluates one
 * exp per logit (the forward + backward pair does two, the least it can do without keeping probabilities).
 *
 * <p>Per row, four float32 values at {@code 4 * row}: the shift {@code m}, {@code rS = (float) (1 / S)},
 * {@code mu = (float) (W / S)} (the row statistics of {@link Engine#logProbs}, the very values the backward
 * formula uses, so the gradient is the same bits with or without saved statistics), and a flag, 1 for a row the
 * forward computed and 0 for a masked one.
 *
 * <p>The forward binds the statistics to its shape (rows, vocab, temperature); the backward rejects statistics
 * bound to another shape or temperature, or whose flag says a row it must differentiate was masked in the
 * forward. The logits must not change in between (that cannot be checked). Reusable across calls; not
 * thread-safe; close it to free its off-heap memory.
 *
 * <p>An engine whose forward also kept each row's {@code e_j} in the future gradient buffer (see
 * {@link Engine#logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray, SoftmaxStats,
 * OffHeapArray)}) records that buffer here, with the index of each row's first maximal logit (whose kept value is
 * exactly 1): the backward reads the kept exps only from that same buffer, and refuses it when a row's kept 1 is
 * gone (the buffer was written in between). One backward consumes them: another backward from the same statistics
 * evaluates the exps again.
 */
public final class SoftmaxStats implements AutoCloseable {
    /** Floats per row. */
    public static final int STRIDE = 4;
    /** Offset of {@code m} within a row's floats. */
    public static final int M = 0;
    /** Offset of {@code rS = 1 / S}. */
    public static final int RS = 1;
    /** Offset of {@code mu = W / S}. */
    public static final int MU = 2;
    /** Offset of the flag: 1 = computed, 0 = masked. */
    public static final int FLAG = 3;

    private final OffHeapArray data;
    private final int capacity;
    private int rows = -1;
    private int vocab;
    private float temperature;
    /** The buffer holding the forward's kept exps (address and bytes), or 0 / 0 when nothing was kept. */
    private long keptAddress;
    private long keptBytes;
    /** Per row, the first maximal logit's index (its kept exp is exactly 1), or -1 (masked row, or none). */
    private final int[] keptTop;
    /** Per row, the checksum of the kept exps (engine-defined), checked by the backward before it reads them. */
    private final int[] keptSum;

    private SoftmaxStats(final int capacity) {
        this.capacity = capacity;
        this.data = OffHeapArray.allocate(ElementType.F32, (long) STRIDE * Math.max(1, capacity));
        this.keptTop = new int[capacity];
        this.keptSum = new int[capacity];
    }

    /**
     * @param capacity rows, {@code >= 0}.
     * @return statistics for up to {@code capacity} rows, unbound.
     * @throws IllegalArgumentException when {@code capacity < 0}.
     */
    public static SoftmaxStats allocate(final int capacity) {
        if (capacity < 0) {
            throw new IllegalArgumentException("capacity must be >= 0 rows, got " + capacity);
        }
        return new SoftmaxStats(capacity);
    }

    /** @return rows this object can hold. */
    public int capacity() {
        return capacity;
    }

    /** @return the rows of the forward that filled it, or -1 when no forward has. */
    public int rows() {
        return rows;
    }

    /** @return the vocabulary size of the forward that filled it. */
    public int vocab() {
        return vocab;
    }

    /** @return the float32 temperature of the forward that filled it. */
    public float temperature() {
        return temperature;
    }

    /** @return the backing float32 array ({@link #STRIDE} floats per row), for engines. */
    public OffHeapArray data() {
        return data;
    }

    /** @return whether {@link #close()} was called. */
    public boolean isClosed() {
        return data.isClosed();
    }

    /** @return {@code m} of row {@code r}. */
    public float shift(final int r) {
        return data.getFloat((long) STRIDE * r + M);
    }

    /** @return {@code rS = (float) (1 / S)} of row {@code r}. */
    public float reciprocalSum(final int r) {
        return data.getFloat((long) STRIDE * r + RS);
    }

    /** @return {@code mu = (float) (W / S)} of row {@code r}. */
    public float meanShiftedLogit(final int r) {
        return data.getFloat((long) STRIDE * r + MU);
    }

    /** @return whether the forward computed row {@code r} (false for a masked row). */
    public boolean computed(final int r) {
        return data.getFloat((long) STRIDE * r + FLAG) != 0f;
    }

    /** Binds to a forward's shape, with nothing kept; called by validation, before the kernel writes the rows. */
    void bind(final int forwardRows, final int forwardVocab, final float t) {
        this.rows = forwardRows;
        this.vocab = forwardVocab;
        this.temperature = t;
        this.keptAddress = 0;
        this.keptBytes = 0;
    }

    /**
     * For engines: records that this forward kept its exps in {@code gradLogits} (after {@link #bind}); the rows'
     * top indices follow through {@link #setKeptTop(int, int)}.
     */
    public void keptIn(final OffHeapArray gradLogits) {
        keptAddress = gradLogits.address();
        keptBytes = gradLogits.byteSize();
    }

    /** For engines: row {@code r}'s first maximal logit, whose kept exp is exactly 1 (-1: none, or masked). */
    public void setKeptTop(final int r, final int top) {
        keptTop[r] = top;
    }

    /** @return row {@code r}'s recorded top index (see {@link #setKeptTop(int, int)}). */
    public int keptTop(final int r) {
        return keptTop[r];
    }

    /** For engines: row {@code r}'s checksum of its kept exps. */
    public void setKeptSum(final int r, final int sum) {
        keptSum[r] = sum;
    }

    /** @return row {@code r}'s checksum of its kept exps, as the forward recorded it. */
    public int keptSum(final int r) {
        return keptSum[r];
    }

    /** For engines: the kept exps were consumed (a backward overwrote them with the gradient). */
    public void keptConsumed() {
        keptAddress = 0;
        keptBytes = 0;
    }

    /** @return whether the forward kept its exps in exactly this buffer (and no backward has consumed them). */
    public boolean keeps(final OffHeapArray gradLogits) {
        return keptBytes != 0 && gradLogits != null && gradLogits.address() == keptAddress
            && gradLogits.byteSize() == keptBytes;
    }

    @Override
    public void close() {
        rows = -1;
        data.close();
    }

    @Override
    public String toString() {
        return "SoftmaxStats[capacity=" + capacity + ", rows=" + rows + ", vocab=" + vocab + ", temperature="
            + temperature + "]";
    }
}
