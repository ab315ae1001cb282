package io.rlvec.vocab;

import java.util.SplittableRandom;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;

/**
 * One seeded vocabulary-pass input (logits, labels, row mask, upstream gradients) with helpers that run an engine
 * on it and return heap copies. Every assertion message should carry {@link #describe()}, which names the seed.
 */
public final class VocabCase implements AutoCloseable {

    /** How the logits of a valid row are filled. */
    public enum Fill {
        /** N(0, 3) logits. */
        NORMAL,
        /** N(0, 2.5) plus one logit lifted by 15-40: a confident row. */
        PEAKED,
        /** Logits of magnitude up to 1e4, both signs, plus a few exact +-1e4. */
        HUGE,
        /** Every logit equal (a row constant). */
        EQUAL,
        /** N(0, 3) with about a third of the logits -inf (masked vocabulary), never all of them. */
        NEG_INF,
        /** Random float bits: every binade from subnormals up to 2^6, both signs, some exact zeros. */
        RAW_BITS,
        /** One logit at 0, the rest in [-90, -84]: exp arguments around its underflow edge EXP_LO = -87.3365. */
        UNDERFLOW_EDGE
    }

    public final long seed;
    public final int rows;
    public final int vocab;
    public final long stride;
    public final ElementType type;
    public final double temperature;
    public final Fill fill;
    /** Logits as floats (bf16 inputs: the widened values), row-major with the stride. */
    public final float[] x;
    public final int[] labels;
    /** Row mask values, or null (every row valid). */
    public final float[] mask;
    public final float[] gradLogProb;
    /** Upstream entropy gradient, or null. */
    public final float[] gradEntropy;

    private final OffHeapArray logitsArr;
    private final OffHeapArray labelsArr;
    private final OffHeapArray maskArr;
    private final OffHeapArray gradLogProbArr;
    private final OffHeapArray gradEntropyArr;

    private VocabCase(final long seed, final int rows, final int vocab, final long stride, final ElementType type,
                      final double temperature, final Fill fill, final float[] x, final int[] labels,
                      final float[] mask, final float[] gradLogProb, final float[] gradEntropy) {
        this.seed = seed;
        this.rows = rows;
        this.vocab = vocab;
        this.stride = stride;
        this.type = type;
        this.temperature = temperature;
        this.fill = fill;
        this.x = x;
        this.labels = labels;
        this.mask = mask;
        this.gradLogProb = gradLogProb;
        this.gradEntropy = gradEntropy;
        this.logitsArr = type == ElementType.BF16 ? OffHeapArray.ofBf16(x) : OffHeapArray.of(x);
        if (type == ElementType.BF16) {
            // Keep the heap copy equal to what the engine reads.
            for (int i = 0; i < x.length; i++) {
                x[i] = logitsArr.getFloat(i);
            }
        }
        this.labelsArr = OffHeapArray.ofInts(labels);
        this.maskArr = mask == null ? null : OffHeapArray.of(mask);
        this.gradLogProbArr = OffHeapArray.of(gradLogProb);
        this.gradEntropyArr = gradEntropy == null ? null : OffHeapArray.of(gradEntropy);
    }

    /** Builder of cases. */
    public static final class Spec {
        private long seed = 1;
        private int rows = 4;
        private int vocab = 33;
        private long pad;
        private ElementType type = ElementType.F32;
        private double temperature = 1.0;
        private Fill fill = Fill.NORMAL;
        private boolean masked;
        private boolean entropyGrad = true;
        private boolean onPolicy;

        public Spec seed(final long v) {
            seed = v;
            return this;
        }

        public Spec rows(final int v) {
            rows = v;
            return this;
        }

        public Spec vocab(final int v) {
            vocab = v;
            return this;
        }

        /** Extra elements between rows (row stride = vocab + pad). */
        public Spec pad(final long v) {
            pad = v;
            return this;
        }

        public Spec type(final ElementType v) {
            type = v;
            return this;
        }

        public Spec temperature(final double v) {
            temperature = v;
            return this;
        }

        public Spec fill(final Fill v) {
            fill = v;
            return this;
        }

        /** About a quarter of the rows masked out, holding NaN/Inf garbage and label -100. */
        public Spec masked(final boolean v) {
            masked = v;
            return this;
        }

        public Spec entropyGrad(final boolean v) {
            entropyGrad = v;
            return this;
        }

        /** Labels at the row maximum (as a sampler at low temperature would pick). */
        public Spec onPolicy(final boolean v) {
            onPolicy = v;
            return this;
        }

        public VocabCase build() {
            final SplittableRandom rnd = new SplittableRandom(seed);
            final long stride = vocab + pad;
            final int len = rows == 0 ? 0 : Math.toIntExact((rows - 1) * stride + vocab);
            final float[] x = new float[len];
            final int[] labels = new int[rows];
            final float[] mask = masked ? new float[rows] : null;
            final float[] gl = new float[rows];
            final float[] ge = entropyGrad ? new float[rows] : null;
            for (int i = 0; i < len; i++) {
                // Padding between rows: garbage that must never be read.
                x[i] = Float.NaN;
            }
            for (int r = 0; r < rows; r++) {
                final int base = Math.toIntExact(r * stride);
                final boolean valid = mask == null || (mask[r] = maskValue(rnd, r)) != 0f;
                if (!valid) {
                    for (int j = 0; j < vocab; j++) {
                        x[base + j] = garbage(rnd);
                    }
                    labels[r] = -100;
                    gl[r] = Float.NaN;
                    if (ge != null) {
                        ge[r] = Float.POSITIVE_INFINITY;
                    }
                    continue;
                }
                fillRow(rnd, x, base, vocab, fill);
                labels[r] = label(rnd, r, x, base);
                // Exact zeros too: zero advantages give gradLogProb 0, entropy_coeff 0 gives gradEntropy 0.
                gl[r] = r % 7 == 4 ? 0f : (float) (rnd.nextDouble(-2, 2));
                if (ge != null) {
                    ge[r] = r % 3 == 2 ? 0f : (float) (rnd.nextDouble(-2, 2));
                }
            }
            return new VocabCase(seed, rows, vocab, stride, type, temperature, fill, x, labels, mask, gl, ge);
        }

        private int label(final SplittableRandom rnd, final int r, final float[] x, final int base) {
            if (onPolicy) {
                int best = 0;
                for (int j = 1; j < vocab; j++) {
                    if (x[base + j] > x[base + best]) {
                        best = j;
                    }
                }
                return best;
            }
            // Edges first, then random labels.
            if (r % 5 == 0) {
                return 0;
            }
            if (r % 5 == 1) {
                return vocab - 1;
            }
            int y = rnd.nextInt(vocab);
            if (fill == Fill.NEG_INF) {
                // Mostly a finite label; sometimes a -inf one (its log-prob is -inf).
                for (int tries = 0; tries < 8 && x[base + y] == Float.NEGATIVE_INFINITY; tries++) {
                    y = rnd.nextInt(vocab);
                }
            }
            return y;
        }

        private static float maskValue(final SplittableRandom rnd, final int r) {
            if (r % 4 == 3) {
                return r % 8 == 3 ? -0f : 0f;
            }
            return r % 3 == 0 ? 0.5f : 1f;
        }
    }

    /** @return a spec with defaults (seed 1, 4 rows x 33, f32, T = 1, normal logits). */
    public static Spec spec() {
        return new Spec();
    }

    static float garbage(final SplittableRandom rnd) {
        return switch (rnd.nextInt(4)) {
            case 0 -> Float.NaN;
            case 1 -> Float.POSITIVE_INFINITY;
            case 2 -> Float.NEGATIVE_INFINITY;
            default -> Float.intBitsToFloat(rnd.nextInt());
        };
    }

    static void fillRow(final SplittableRandom rnd, final float[] x, final int base, final int vocab, final Fill fill) {
        switch (fill) {
            case NORMAL -> {
                for (int j = 0; j < vocab; j++) {
                    x[base + j] = (float) (3 * gaussian(rnd));
                }
            }
            case PEAKED -> {
                for (int j = 0; j < vocab; j++) {
                    x[base + j] = (float) (2.5 * gaussian(rnd));
                }
                x[base + rnd.nextInt(vocab)] += (float) rnd.nextDouble(15, 40);
            }
            case HUGE -> {
                for (int j = 0; j < vocab; j++) {
                    x[base + j] = switch (rnd.nextInt(6)) {
                        case 0 -> 1e4f;
                        case 1 -> -1e4f;
                        default -> (float) rnd.nextDouble(-1e4, 1e4);
                    };
                }
            }
            case EQUAL -> {
                final float c = (float) rnd.nextDouble(-50, 50);
                for (int j = 0; j < vocab; j++) {
                    x[base + j] = c;
                }
            }
            case NEG_INF -> {
                for (int j = 0; j < vocab; j++) {
                    x[base + j] = rnd.nextInt(3) == 0 ? Float.NEGATIVE_INFINITY : (float) (3 * gaussian(rnd));
                }
                x[base + rnd.nextInt(vocab)] = (float) (3 * gaussian(rnd));
            }
            case UNDERFLOW_EDGE -> {
                for (int j = 0; j < vocab; j++) {
                    x[base + j] = (float) rnd.nextDouble(-90, -84);
                }
                x[base + rnd.nextInt(vocab)] = 0f;
            }
            case RAW_BITS -> {
                for (int j = 0; j < vocab; j++) {
                    // Exponent field 0 (zero/subnormal) .. 133 (2^6): every binade of small magnitudes.
                    final int exp = rnd.nextInt(134);
                    final int bits = (rnd.nextBoolean() ? 0x80000000 : 0) | (exp << 23) | (rnd.nextInt() & 0x7FFFFF);
                    x[base + j] = rnd.nextInt(50) == 0 ? 0f : Float.intBitsToFloat(bits);
                }
            }
        }
    }

    static double gaussian(final SplittableRandom rnd) {
        // Box-Muller from the seeded generator (SplittableRandom has no nextGaussian before JDK 17's RandomGenerator).
        final double u = 1 - rnd.nextDouble();
        final double v = rnd.nextDouble();
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }

    /** @return the logits view (over this case's own array). */
    public Logits logits() {
        return Logits.of(logitsArr, rows, vocab, stride);
    }

    public OffHeapArray logitsArray() {
        return logitsArr;
    }

    public OffHeapArray labelsArray() {
        return labelsArr;
    }

    public OffHeapArray maskArray() {
        return maskArr;
    }

    public OffHeapArray gradLogProbArray() {
        return gradLogProbArr;
    }

    public OffHeapArray gradEntropyArray() {
        return gradEntropyArr;
    }

    /** @return whether row r is valid. */
    public boolean valid(final int r) {
        return mask == null || mask[r] != 0f;
    }

    /** @return a description naming the seed, for assertion messages. */
    public String describe() {
        return "seed=" + seed + " rows=" + rows + " vocab=" + vocab + " stride=" + stride + " " + type + " T="
            + temperature + " fill=" + fill + (mask != null ? " masked" : "") + (gradEntropy == null ? " ge=null" : "");
    }

    @Override
    public String toString() {
        return describe();
    }

    /** Forward outputs. */
    public record Forward(float[] logProb, float[] entropy) {
    }

    /** Runs {@link Engine#logProbs} (with entropy) into fresh buffers. */
    public Forward forward(final Engine engine) {
        try (OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, rows)) {
            lp.fill(Float.NaN);
            ent.fill(Float.NaN);
            engine.logProbs(logits(), labelsArr, temperature, maskArr, lp, ent);
            return new Forward(lp.toFloatArray(), ent.toFloatArray());
        }
    }

    /**
     * Forward outputs with the sum of squared probabilities, and (for the kept-exps form) the gradient the
     * backward then gives from the kept exps (else null).
     */
    public record ForwardSq(float[] logProb, float[] entropy, float[] sumPiSquared, float[] gradient) {
    }

    /** The forms of the forward that can write the sum of squared probabilities. */
    public enum SqForm {
        /** Log-prob and the sum only (no entropy, no statistics). */
        PLAIN,
        /** With the entropy and saved statistics. */
        STATS,
        /** With the entropy, saved statistics and the exps kept in the gradient buffer (then the backward). */
        KEPT
    }

    /**
     * Runs {@link Engine#logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray,
     * OffHeapArray, SoftmaxStats, OffHeapArray)} with a sum-of-squared-probabilities buffer, in the given form.
     */
    public ForwardSq forwardSumPiSquared(final Engine engine, final SqForm form) {
        try (OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray sq = OffHeapArray.allocate(ElementType.F32, rows);
             SoftmaxStats st = SoftmaxStats.allocate(rows);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, x.length)) {
            lp.fill(Float.NaN);
            ent.fill(Float.NaN);
            sq.fill(Float.NaN);
            g.fill(SENTINEL);
            final boolean plain = form == SqForm.PLAIN;
            engine.logProbs(logits(), labelsArr, temperature, maskArr, lp, plain ? null : ent, sq,
                plain ? null : st, form == SqForm.KEPT ? g : null);
            float[] grad = null;
            if (form == SqForm.KEPT) {
                engine.logProbsBackward(logits(), labelsArr, temperature, maskArr, gradLogProbArr, gradEntropyArr, g,
                    st);
                grad = g.toFloatArray();
            }
            return new ForwardSq(lp.toFloatArray(), plain ? null : ent.toFloatArray(), sq.toFloatArray(), grad);
        }
    }

    /**
     * Runs {@link Engine#logProbsBackward} into a fresh buffer of the logits' layout whose padding holds a
     * sentinel, and returns the whole buffer (padding included).
     */
    public float[] backward(final Engine engine) {
        try (OffHeapArray g = OffHeapArray.allocate(ElementType.F32, x.length)) {
            g.fill(SENTINEL);
            engine.logProbsBackward(logits(), labelsArr, temperature, maskArr, gradLogProbArr, gradEntropyArr, g);
            return g.toFloatArray();
        }
    }

    /** Runs the backward in place on a float32 copy of the logits; returns the buffer. */
    public float[] backwardInPlace(final Engine engine) {
        try (OffHeapArray g = OffHeapArray.of(x.clone())) {
            final Logits own = Logits.of(g, rows, vocab, stride);
            engine.logProbsBackward(own, labelsArr, temperature, maskArr, gradLogProbArr, gradEntropyArr, g);
            return g.toFloatArray();
        }
    }

    /**
     * Runs {@link Engine#logProbs} saving {@link SoftmaxStats}, then {@link Engine#logProbsBackward} from them into
     * a fresh sentinel-padded buffer ({@code inPlace}: over a float32 copy of the logits instead); returns the
     * gradient buffer.
     */
    public float[] backwardSaved(final Engine engine, final boolean inPlace) {
        return backwardFromStats(engine, inPlace, false);
    }

    /**
     * Runs {@link Engine#logProbs} saving {@link SoftmaxStats} and keeping its exps in the gradient buffer, then
     * {@link Engine#logProbsBackward} from both into that buffer (sentinel-padded; {@code inPlace}: a float32 copy of
     * the logits, where nothing can be kept); returns the gradient buffer.
     */
    public float[] backwardKept(final Engine engine, final boolean inPlace) {
        return backwardFromStats(engine, inPlace, true);
    }

    private float[] backwardFromStats(final Engine engine, final boolean inPlace, final boolean keep) {
        try (SoftmaxStats st = SoftmaxStats.allocate(rows);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray copy = OffHeapArray.of(x.clone());
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, x.length)) {
            final Logits l = inPlace ? Logits.of(copy, rows, vocab, stride) : logits();
            final OffHeapArray out = inPlace ? copy : g;
            g.fill(SENTINEL);
            // The kept form asks for the entropy too (the forward then accumulates W, as a trainer's would).
            engine.logProbs(l, labelsArr, temperature, maskArr, lp, keep ? h : null, st, keep ? out : null);
            engine.logProbsBackward(l, labelsArr, temperature, maskArr, gradLogProbArr, gradEntropyArr, out, st);
            return out.toFloatArray();
        }
    }

    /** Runs {@link Engine#logProbs} saving statistics; returns their floats ({@link SoftmaxStats#STRIDE} a row). */
    public float[] savedStats(final Engine engine) {
        try (SoftmaxStats st = SoftmaxStats.allocate(rows);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows)) {
            st.data().fill(Float.NaN);
            engine.logProbs(logits(), labelsArr, temperature, maskArr, lp, null, st);
            final float[] all = st.data().toFloatArray();
            return java.util.Arrays.copyOf(all, SoftmaxStats.STRIDE * rows);
        }
    }

    /** Fills the padding of gradient buffers: a value no gradient formula produces. */
    public static final float SENTINEL = Float.intBitsToFloat(0x7FC0BEEF);

    @Override
    public void close() {
        logitsArr.close();
        labelsArr.close();
        if (maskArr != null) {
            maskArr.close();
        }
        gradLogProbArr.close();
        if (gradEntropyArr != null) {
            gradEntropyArr.close();
        }
    }
}
