package io.rlvec.testing;

import java.util.Arrays;

import io.rlvec.Column;
import io.rlvec.TokenBatch;

/**
 * Heap-side token data for tests: the flat columns of a batch in one layout (padded {@code (B, T)} or packed),
 * which can be turned into an off-heap {@link TokenBatch}, re-laid out packed, or cut into micro-batches.
 * Generators fill it with seeded adversarial content.
 */
public final class TokenData {
    /** Sequence boundaries, B+1 entries. */
    public final int[] offsets;
    /** T for a padded layout, 0 for packed. */
    public final int paddedWidth;
    /** Per sequence: its own slots before right padding (padded: &lt;= T; packed: its length). */
    public final int[] rowLengths;
    /** log_prob column. */
    public final float[] logProb;
    /** old_log_prob column. */
    public final float[] oldLogProb;
    /** advantages column. */
    public final float[] advantages;
    /** response mask (non-zero = valid). */
    public final float[] mask;
    /** rollout_is_weights column, or null. */
    public final float[] weights;

    private TokenData(final int[] offsets, final int paddedWidth, final int[] rowLengths, final float[] logProb,
                      final float[] oldLogProb, final float[] advantages, final float[] mask, final float[] weights) {
        this.offsets = offsets;
        this.paddedWidth = paddedWidth;
        this.rowLengths = rowLengths;
        this.logProb = logProb;
        this.oldLogProb = oldLogProb;
        this.advantages = advantages;
        this.mask = mask;
        this.weights = weights;
    }

    /** @return padded (B, T) data from row-major columns (B = length / T); weights may be null. */
    public static TokenData padded(final int width, final float[] logProb, final float[] oldLogProb,
                                   final float[] advantages, final float[] mask, final float[] weights) {
        final int b = logProb.length / width;
        final int[] off = new int[b + 1];
        final int[] rows = new int[b];
        for (int s = 0; s < b; s++) {
            off[s + 1] = (s + 1) * width;
            rows[s] = width;
        }
        return new TokenData(off, width, rows, logProb.clone(), oldLogProb.clone(), advantages.clone(),
            mask.clone(), weights == null ? null : weights.clone());
    }

    /** @return packed data with the given sequence lengths; weights may be null. */
    public static TokenData packed(final int[] lengths, final float[] logProb, final float[] oldLogProb,
                                   final float[] advantages, final float[] mask, final float[] weights) {
        final int[] off = new int[lengths.length + 1];
        for (int s = 0; s < lengths.length; s++) {
            off[s + 1] = off[s] + lengths[s];
        }
        return new TokenData(off, 0, lengths.clone(), logProb.clone(), oldLogProb.clone(), advantages.clone(),
            mask.clone(), weights == null ? null : weights.clone());
    }

    /** @return B. */
    public int numSequences() {
        return offsets.length - 1;
    }

    /** @return N, token slots of this layout. */
    public int numTokens() {
        return offsets[offsets.length - 1];
    }

    /** @return whether the layout is padded. */
    public boolean isPadded() {
        return paddedWidth > 0;
    }

    /** @return valid tokens (mask != 0). */
    public long validTokens() {
        long c = 0;
        for (final float m : mask) {
            c += m != 0f ? 1 : 0;
        }
        return c;
    }

    /** @return sequences with at least one valid token. */
    public long validSequences() {
        long c = 0;
        for (int s = 0; s < numSequences(); s++) {
            for (int t = offsets[s]; t < offsets[s + 1]; t++) {
                if (mask[t] != 0f) {
                    c++;
                    break;
                }
            }
        }
        return c;
    }

    /** @return a new off-heap batch holding copies of the columns (weights included when present). */
    public TokenBatch batch() {
        return batch(true);
    }

    /** @return a new off-heap batch; {@code withWeights = false} leaves rollout_is_weights out. */
    public TokenBatch batch(final boolean withWeights) {
        final TokenBatch.Builder b = isPadded() ? TokenBatch.padded(numSequences(), paddedWidth)
            : TokenBatch.withOffsets(offsets);
        b.column(Column.LOG_PROB, logProb).column(Column.OLD_LOG_PROB, oldLogProb)
            .column(Column.ADVANTAGES, advantages).column(Column.RESPONSE_MASK, mask);
        if (withWeights && weights != null) {
            b.column(Column.ROLLOUT_IS_WEIGHTS, weights);
        }
        return b.build();
    }

    /** @return the same sequences packed: each keeps its first {@code rowLengths[s]} slots, padding dropped. */
    public TokenData packed() {
        final int b = numSequences();
        final int[] off = new int[b + 1];
        for (int s = 0; s < b; s++) {
            off[s + 1] = off[s] + rowLengths[s];
        }
        final int n = off[b];
        final float[][] cols = new float[5][];
        final float[][] src = {logProb, oldLogProb, advantages, mask, weights};
        for (int c = 0; c < 5; c++) {
            if (src[c] == null) {
                continue;
            }
            cols[c] = new float[n];
            for (int s = 0; s < b; s++) {
                System.arraycopy(src[c], offsets[s], cols[c], off[s], rowLengths[s]);
            }
        }
        return new TokenData(off, 0, rowLengths.clone(), cols[0], cols[1], cols[2], cols[3], cols[4]);
    }

    /** @return sequences {@code [from, to)} as a micro-batch in the same layout (padded keeps T). */
    public TokenData sequences(final int from, final int to) {
        final int lo = offsets[from];
        final int hi = offsets[to];
        final int[] off = new int[to - from + 1];
        for (int s = from; s <= to; s++) {
            off[s - from] = offsets[s] - lo;
        }
        return new TokenData(off, paddedWidth, Arrays.copyOfRange(rowLengths, from, to),
            Arrays.copyOfRange(logProb, lo, hi), Arrays.copyOfRange(oldLogProb, lo, hi),
            Arrays.copyOfRange(advantages, lo, hi), Arrays.copyOfRange(mask, lo, hi),
            weights == null ? null : Arrays.copyOfRange(weights, lo, hi));
    }

    /** @return the tokens of {@code gradient} that belong to sequences {@code [from, to)} of this layout. */
    public float[] sliceTokens(final float[] perToken, final int from, final int to) {
        return Arrays.copyOfRange(perToken, offsets[from], offsets[to]);
    }

    /** Options of {@link #random}. */
    public static final class Options {
        /** padded (B, T) or packed. */
        public boolean padded;
        /** most sequences. */
        public int maxBatch = 40;
        /** longest sequence. */
        public int maxLength = 300;
        /** whether rollout_is_weights is present. */
        public boolean weights;
        /** probability that a valid token holds NaN or Inf in one of its columns. */
        public double validSpecials;

        /** @return options for a padded or packed batch. */
        public static Options of(final boolean padded) {
            final Options o = new Options();
            o.padded = padded;
            return o;
        }

        /** @return this with rollout weights on or off. */
        public Options weights(final boolean on) {
            weights = on;
            return this;
        }

        /** @return this with the given sizes. */
        public Options sizes(final int maxBatchSize, final int maxLen) {
            maxBatch = maxBatchSize;
            maxLength = maxLen;
            return this;
        }

        /** @return this with NaN/Inf at valid tokens at the given rate. */
        public Options validSpecials(final double rate) {
            validSpecials = rate;
            return this;
        }
    }

    /** Lengths around every lane count (4, 8, 16) and primes, drawn often so that tails are exercised. */
    private static final int[] EDGE_LENGTHS = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127,
        129, 255, 257};

    /**
     * Seeded adversarial data: lengths straddling lane multiples, fully masked rows, masked slots holding NaN,
     * Inf or random bits in every column, valid tokens with |log-ratio| in {20, 20.5, 25, 100, 1e4}, exact
     * ratio 1 (log_prob == old_log_prob), A = 0 and A &lt; 0, subnormals, and non-unit mask values.
     */
    public static TokenData random(final Gen g, final Options o) {
        final int b = g.between(1, o.maxBatch);
        final int[] lengths = new int[b];
        for (int s = 0; s < b; s++) {
            int len = g.chance(0.3) ? EDGE_LENGTHS[g.nextInt(EDGE_LENGTHS.length)] : g.between(0, o.maxLength);
            lengths[s] = Math.min(len, o.maxLength);
        }
        int width = 1;
        for (final int len : lengths) {
            width = Math.max(width, len);
        }
        if (o.padded) {
            width += g.nextInt(3);
        }
        final int[] off = new int[b + 1];
        for (int s = 0; s < b; s++) {
            off[s + 1] = off[s] + (o.padded ? width : lengths[s]);
        }
        final int n = off[b];
        final float[] lp = new float[n];
        final float[] old = new float[n];
        final float[] adv = new float[n];
        final float[] mask = new float[n];
        final float[] w = o.weights ? new float[n] : null;
        for (int s = 0; s < b; s++) {
            final boolean fullyMasked = g.chance(0.08);
            for (int t = off[s]; t < off[s + 1]; t++) {
                final boolean inRow = t - off[s] < lengths[s];
                final boolean valid = inRow && !fullyMasked && !g.chance(0.12);
                if (!valid) {
                    mask[t] = g.chance(0.5) ? 0f : -0f;
                    lp[t] = g.garbage();
                    old[t] = g.garbage();
                    adv[t] = g.garbage();
                    if (w != null) {
                        w[t] = g.garbage();
                    }
                    continue;
                }
                mask[t] = g.chance(0.93) ? 1f : g.pick(0.5f, 2f, -1f, Float.MIN_VALUE);
                fillValid(g, t, lp, old, adv, w);
                if (o.validSpecials > 0 && g.chance(o.validSpecials)) {
                    final float special = g.pick(Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY);
                    switch (g.nextInt(w != null ? 4 : 3)) {
                        case 0 -> lp[t] = special;
                        case 1 -> old[t] = special;
                        case 2 -> adv[t] = special;
                        default -> w[t] = special;
                    }
                }
            }
        }
        return new TokenData(off, o.padded ? width : 0, lengths, lp, old, adv, mask, w);
    }

    private static void fillValid(final Gen g, final int t, final float[] lp, final float[] old, final float[] adv,
                                  final float[] w) {
        final float logProb = g.chance(0.03) ? g.subnormal() : -Math.abs(g.gaussian(2.0));
        final double kind = g.uniform();
        final float delta;
        if (kind < 0.62) {
            delta = g.gaussian(0.15);
        } else if (kind < 0.72) {
            delta = 0f;
        } else if (kind < 0.82) {
            final float big = g.pick(20f, 20.5f, 25f, 100f, 1e4f);
            delta = g.chance(0.5) ? big : -big;
        } else if (kind < 0.86) {
            delta = g.subnormal();
        } else {
            delta = g.gaussian(1.0);
        }
        lp[t] = logProb;
        old[t] = delta == 0f ? logProb : logProb - delta;
        final double a = g.uniform();
        if (a < 0.55) {
            adv[t] = g.gaussian(1.0);
        } else if (a < 0.67) {
            adv[t] = g.chance(0.5) ? 0f : -0f;
        } else if (a < 0.82) {
            adv[t] = -Math.abs(g.gaussian(1.0));
        } else if (a < 0.92) {
            adv[t] = g.pick(1e-3f, -1e-3f, 5f, -5f, 100f, -100f);
        } else {
            adv[t] = g.subnormal();
        }
        if (w != null) {
            final double k = g.uniform();
            if (k < 0.7) {
                w[t] = (float) (2.0 * g.uniform());
            } else if (k < 0.8) {
                w[t] = 0f;
            } else if (k < 0.85) {
                w[t] = Math.abs(g.subnormal());
            } else {
                w[t] = g.pick(0.5f, 1f, 2f, 1e3f);
            }
        }
    }

    /** @return a seeded random per-token value column for agg_loss tests (masked slots hold garbage). */
    public float[] randomValues(final Gen g) {
        final float[] v = new float[numTokens()];
        for (int t = 0; t < v.length; t++) {
            if (mask[t] == 0f) {
                v[t] = g.garbage();
            } else {
                final double k = g.uniform();
                v[t] = k < 0.8 ? g.gaussian(3.0) : k < 0.9 ? g.subnormal() : g.pick(0f, -0f, 1e6f, -1e6f);
            }
        }
        return v;
    }

    @Override
    public String toString() {
        return (isPadded() ? "padded T=" + paddedWidth : "packed") + " B=" + numSequences() + " N=" + numTokens()
            + " lengths=" + Arrays.toString(rowLengths) + (weights != null ? " +weights" : "");
    }
}
