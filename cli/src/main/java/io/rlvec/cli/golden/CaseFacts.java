package io.rlvec.cli.golden;

/**
 * What a case's inputs are like, as far as the documented {@link Deviation}s need to know.
 *
 * @param validTokens     tokens where the mask is non-zero.
 * @param maskedNonFinite whether some input holds NaN or Inf at a masked position.
 * @param negInfRows      for cases with logits, one flag per logits row: whether that row holds a {@code -inf}
 *                        logit; empty for cases without logits.
 * @param validNonFinite  whether some input holds NaN or Inf at a valid position.
 */
public record CaseFacts(long validTokens, boolean maskedNonFinite, boolean[] negInfRows, boolean validNonFinite) {

    /** Copies the flags. */
    public CaseFacts {
        negInfRows = negInfRows.clone();
    }

    /**
     * Facts of a case without logits.
     *
     * @param validTokens     tokens where the mask is non-zero.
     * @param maskedNonFinite whether some input holds NaN or Inf at a masked position.
     */
    public CaseFacts(final long validTokens, final boolean maskedNonFinite) {
        this(validTokens, maskedNonFinite, new boolean[0], false);
    }

    /** Facts of a case with logits rows (no valid non-finite input recorded). */
    public CaseFacts(final long validTokens, final boolean maskedNonFinite, final boolean[] negInfRows) {
        this(validTokens, maskedNonFinite, negInfRows, false);
    }

    /** @return a copy of the per-row flags (empty for cases without logits). */
    @Override
    public boolean[] negInfRows() {
        return negInfRows.clone();
    }

    /**
     * Whether element {@code index} of an output belongs to a logits row that holds {@code -inf}. The output's
     * elements are row-major over the logits rows ({@code values / rows} elements per row: 1 for per-row values,
     * vocab for gradients w.r.t. the logits).
     *
     * @param outputLength elements of the output.
     * @param index        an element of the output.
     * @return false when the case has no logits or the output is not a whole number of elements per row.
     */
    public boolean negInfRowAt(final int outputLength, final int index) {
        final int rows = negInfRows.length;
        if (rows == 0 || outputLength % rows != 0 || index < 0 || index >= outputLength) {
            return false;
        }
        return negInfRows[index / (outputLength / rows)];
    }
}
