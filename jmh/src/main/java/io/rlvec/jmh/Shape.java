package io.rlvec.jmh;

import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A benchmark batch shape, written as the {@code shape} parameter: {@code padded-BxT} is a padded {@code (B, T)}
 * batch, {@code packed-BxT} a packed batch of {@code B} ragged sequences holding the same {@code B*T} tokens in
 * total. The report summary derives ns/token from the same {@code BxT} text, so both always agree on the token
 * count.
 *
 * @param packed whether the sequences are ragged and back to back.
 * @param batch  B, the number of sequences.
 * @param width  T, the padded width (for a packed shape: the mean sequence length).
 */
public record Shape(boolean packed, int batch, int width) {
    private static final Pattern FORM = Pattern.compile("(padded|packed)-(\\d+)x(\\d+)");

    /** Validates the dimensions. */
    public Shape {
        if (batch < 1 || width < 1 || (long) batch * width > Integer.MAX_VALUE - 64) {
            throw new IllegalArgumentException("shape needs B >= 1, T >= 1 and B*T within the int range, got B="
                + batch + ", T=" + width);
        }
    }

    /**
     * @param text {@code padded-BxT} or {@code packed-BxT}, e.g. {@code padded-64x4096}.
     * @return the shape.
     * @throws IllegalArgumentException naming the expected form.
     */
    public static Shape parse(final String text) {
        final Matcher m = FORM.matcher(text == null ? "" : text.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("shape must be padded-BxT or packed-BxT (e.g. padded-64x4096), got '"
                + text + "'");
        }
        return new Shape("packed".equals(m.group(1)), Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3)));
    }

    /** @return the number of token slots, B*T (valid or masked). */
    public int tokens() {
        return batch * width;
    }

    /**
     * The token count of each sequence. Padded: every sequence has T slots. Packed: B lengths drawn uniformly
     * from {@code [1, 2T-1]} (mean T, so a long tail of short and long sequences as in RL rollouts), then
     * rescaled so that they add up to exactly {@code B*T}.
     *
     * @param rnd the seeded generator (consumed only for a packed shape).
     * @return B lengths adding up to {@link #tokens()}.
     */
    public int[] lengths(final SplittableRandom rnd) {
        final int[] len = new int[batch];
        if (!packed) {
            java.util.Arrays.fill(len, width);
            return len;
        }
        final long total = tokens();
        final long[] raw = new long[batch];
        long rawSum = 0;
        for (int i = 0; i < batch; i++) {
            raw[i] = rnd.nextInt(1, 2 * width);
            rawSum += raw[i];
        }
        long sum = 0;
        for (int i = 0; i < batch; i++) {
            len[i] = (int) Math.max(1, raw[i] * total / rawSum);
            sum += len[i];
        }
        // Flooring leaves a small remainder (or the max(1, .) bumps overshoot): settle it one token at a time,
        // round robin, never taking a sequence below one token.
        for (int i = 0; sum != total; i = (i + 1) % batch) {
            if (sum < total) {
                len[i]++;
                sum++;
            } else if (len[i] > 1) {
                len[i]--;
                sum--;
            }
        }
        return len;
    }

    @Override
    public String toString() {
        return (packed ? "packed-" : "padded-") + batch + "x" + width;
    }
}
