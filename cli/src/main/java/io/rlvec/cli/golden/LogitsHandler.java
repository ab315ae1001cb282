package io.rlvec.cli.golden;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.cli.io.TensorInfo;

/**
 * verl's vocabulary pass ({@code torch_functional.entropy_from_logits} and {@code logprobs_from_logits}, naive and
 * v2, after dp_actor's {@code logits.div_(temperature)}): inputs {@code in.logits} {@code [N, V]} (F32, or F64
 * rounded to float32), {@code in.labels} (I64, as int32), {@code in.w1}, {@code in.w2} {@code [N]} and the param
 * {@code temperature}. The engine's {@link Engine#logProbs} and {@link Engine#logProbsBackward} (every row valid)
 * give one log-prob, one entropy, one sum of squared probabilities and one gradient per row, which stand for
 * several verl outputs:
 * <ul>
 * <li>{@code out.logprob_naive}, {@code out.logprob_v2}, {@code out.logprob_dispatch}: the engine's log-prob
 * (relative 1e-5 each);</li>
 * <li>{@code out.entropy}, {@code out.entropy_chunking}: the engine's entropy (relative 1e-5);</li>
 * <li>{@code out.grad_logits_naive}, {@code out.grad_logits_v2}: the engine's gradient w.r.t. the raw logits of
 * {@code sum(logprob * w1) + sum(entropy * w2)} (gradLogProb = w1, gradEntropy = w2; absolute 1e-5);</li>
 * <li>{@code out.sum_pi_squared} ({@code calculate_sum_pi_squared_from_logits}, sum of softmax(z)^2 per row): the
 * engine's, from the same forward (relative 1e-5).</li>
 * </ul>
 * Every output is judged by derived bounds: log-probs and entropies by their float32 bounds, the gradients and
 * sum_pi_squared by the engine's vocabulary pass operation by operation ({@link Exact}); a float64 case against
 * verl's double evaluation on the stored logits ({@link Exact#ofStored}, {@link CaseOutputs.Referee#storedInDouble}).
 * The harness's double-precision evaluation also referees {@link Deviation#TORCH_LESS_ACCURATE}: at logits with a large common offset (rows of about 1000
 * in the peaked scenarios) torch's float32 softmax is off by up to ~1e-4, and a peaked row's entropy of 1e-16 to
 * 1e-22 is exactly 0 in torch; there the engine must be within tolerance of the double value and closer to it
 * than verl, and verl's error must be of float32 rounding size (see {@link Exact} for the budget).
 * Rows holding a {@code -inf} logit make verl's entropy and that row's gradients NaN ({@link Deviation#NEG_INF_LOGIT},
 * allowed on the entropies and gradients only; the log-probs must match).
 */
public final class LogitsHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION =
        "verl.utils.torch_functional.entropy_from_logits+logprobs_from_logits_{naive,v2}";

    private static final String LOGITS = "in.logits";
    private static final String LABELS = "in.labels";
    private static final String W1 = "in.w1";
    private static final String W2 = "in.w2";
    /** Params that describe the case (shape, generator, objective) and are not arguments of the vocabulary pass. */
    private static final String[] DESCRIPTIVE = {"N", "V", "kind", "objective", "temperature"};

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        golden.lossSpec(DESCRIPTIVE).build();
        if (!golden.params().hasNonNull("temperature") || !golden.params().get("temperature").isNumber()) {
            throw new IllegalArgumentException("params must give the number 'temperature'");
        }
        final double temperature = golden.params().get("temperature").doubleValue();
        final int[] nv = golden.matrixShape(LOGITS);
        final int rows = nv[0];
        final int vocab = nv[1];
        for (final String perRow : new String[] {LABELS, W1, W2}) {
            final TensorInfo t = golden.file().info(perRow);
            if (t.rank() != 1 || t.dim(0) != rows) {
                throw new IllegalArgumentException(perRow + " must have shape [" + rows + "] (one per logits row), got "
                    + t.describe());
            }
        }
        final OffHeapArray x = golden.float32(LOGITS);
        final OffHeapArray labels = golden.int32(LABELS);
        final Logits logits = Logits.of(x, rows, vocab);
        try (OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray sq = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, (long) rows * vocab)) {
            engine.logProbs(logits, labels, temperature, null, lp, ent, sq, null, null);
            engine.logProbsBackward(logits, labels, temperature, null, golden.float32(W1), golden.float32(W2), grad);

            final float[] xs = x.toFloatArray();
            final boolean[] negInf = new boolean[rows];
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < vocab; j++) {
                    negInf[r] |= xs[r * vocab + j] == Float.NEGATIVE_INFINITY;
                }
            }
            final float[] logProb = lp.toFloatArray();
            final float[] entropy = ent.toFloatArray();
            final float[] g = grad.toFloatArray();
            final Exact exact = Exact.of(xs, labels.toIntArray(), golden.float32(W1).toFloatArray(),
                golden.float32(W2).toFloatArray(), rows, vocab, (float) temperature);
            final float[] spp = sq.toFloatArray();
            // A float64 case: verl divided the stored logits by the temperature in double and went on in double;
            // judged against that evaluation, the engine's bound including the move from rounding the inputs.
            final boolean f64 = golden.file().info(LOGITS).dtype() == io.rlvec.cli.io.Dtype.F64;
            final Exact stored = f64 ? Exact.ofStored(xs, golden.expected(LOGITS), labels.toIntArray(),
                golden.float32(W1).toFloatArray(), golden.float32(W2).toFloatArray(), rows, vocab, temperature)
                : null;
            final CaseOutputs.Referee hRef = f64 ? exact.entropy.storedInDouble(stored.entropy) : exact.entropy;
            final CaseOutputs.Referee lpRef = f64 ? exact.logProb.storedInDouble(stored.logProb) : exact.logProb;
            final CaseOutputs.Referee gRef = f64 ? exact.grad.storedInDouble(stored.grad) : exact.grad;
            final CaseOutputs.Referee sppRef = f64 ? exact.sumPiSquared.storedInDouble(stored.sumPiSquared)
                : exact.sumPiSquared;
            final Deviation nan = Deviation.NEG_INF_LOGIT;
            final Deviation torch = Deviation.TORCH_LESS_ACCURATE;
            return new CaseOutputs(new CaseFacts(rows, false, negInf))
                .refereed("out.entropy", entropy, hRef, Tolerance.VALUE, null, nan, torch)
                .refereed("out.logprob_naive", logProb, lpRef, Tolerance.VALUE, null)
                .refereed("out.logprob_v2", logProb.clone(), lpRef, Tolerance.VALUE, null)
                .refereed("out.logprob_dispatch", logProb.clone(), lpRef, Tolerance.VALUE, null)
                .refereed("out.entropy_chunking", entropy.clone(), hRef, Tolerance.VALUE, null, nan, torch)
                .refereed("out.sum_pi_squared", spp, sppRef, Tolerance.VALUE, null, torch)
                .refereed("out.grad_logits_naive", g, gRef, Tolerance.GRADIENT, null, nan, torch)
                .refereed("out.grad_logits_v2", g.clone(), gRef, Tolerance.GRADIENT, null, nan, torch);
        }
    }

    /**
     * The vocabulary pass in double from the same float32 inputs, the referee of
     * {@link Deviation#TORCH_LESS_ACCURATE}: {@code z = x / t} in float32 (as torch's {@code div_}), everything
     * after it in double; a {@code -inf} logit has probability 0 and adds 0 to the entropy and its gradient.
     *
     * <p>The float32 error budget of a row: torch rounds {@code z_j - logsumexp(z)} (and the other steps of its
     * log_softmax/softmax) at the magnitude of the row's logits, so every log-probability it uses may be off by
     * {@code delta = ROUNDINGS * (ulp32(max_j |z_j|) + ulp32(1))}, and every probability by a factor
     * {@code 1 +- delta}. Propagated: entropy {@code delta * (1 + H)}; sum of p^2 {@code 2 delta * sum p^2};
     * gradient element j {@code delta * p_j * (|w1| + |w2| * (2 + |log p_j| + H)) / t} (p_j's error through
     * {@code d log_prob / d z_j = [j == label] - p_j} and {@code d H / d z_j = -p_j (log p_j + H)}).
     *
     * @param entropy      per row.
     * @param sumPiSquared per row, {@code sum_j p_j^2}.
     * @param grad         per logit, d (w1 * log_prob + w2 * entropy) / d x.
     */
    record Exact(CaseOutputs.Referee entropy, CaseOutputs.Referee sumPiSquared, CaseOutputs.Referee grad,
                 CaseOutputs.Referee logProb) {
        /** float32's unit roundoff. */
        private static final double U = 0x1p-24;

        /**
         * Float32 roundings a log_softmax / softmax / entropy chain may accumulate on one value (subtraction of the
         * maximum, of the log-sum-exp, exp, the products and the sums' last roundings): a generous count, since
         * the budget only has to separate rounding (a few ulps of the logits' magnitude) from a semantic
         * difference (an error of order 1).
         */
        static final double ROUNDINGS = 16;

        static Exact of(final float[] x, final int[] labels, final float[] w1, final float[] w2, final int rows,
                        final int vocab, final float t) {
            return of(x, labels, F32Term.widen(w1), F32Term.widen(w2), null, null, rows, vocab, t);
        }

        /**
         * The same with upstream gradients that carry errors of their own (the composition's d loss / d log_prob
         * and d loss / d entropy, computed by the engine from its own log-probs): {@code e1}, {@code e2} per row
         * bound the engine's upstream values' distance from {@code w1}, {@code w2} (null: exact); they enter the
         * gradient's bound through {@code abs([j == label] - p_j) e1 / t + abs(p_j (log p_j + H)) e2 / t}.
         */
        static Exact of(final float[] x, final int[] labels, final double[] w1, final double[] w2,
                        final double[] e1, final double[] e2, final int rows, final int vocab, final float t) {
            final double[] zs = new double[x.length];
            for (int k = 0; k < x.length; k++) {
                zs[k] = x[k] / t; // verl's in-place division of float32 logits: float32
            }
            return of(x, zs, labels, w1, w2, e1, e2, rows, vocab, t);
        }

        /**
         * The pass on a float64 case's stored logits, which verl divides by the temperature in double: the exact
         * values and verl's budgets there ({@link CaseOutputs.Referee#storedInDouble} takes the engine's bound from
         * the float32 side).
         */
        static Exact ofStored(final float[] x, final double[] stored, final int[] labels, final float[] w1,
                              final float[] w2, final int rows, final int vocab, final double temperature) {
            final double[] zs = new double[stored.length];
            for (int k = 0; k < stored.length; k++) {
                zs[k] = stored[k] / temperature;
            }
            return of(x, zs, labels, F32Term.widen(w1), F32Term.widen(w2), null, null, rows, vocab,
                (float) temperature);
        }

        /** @param zs the logits divided by the temperature as verl divides them (the exact values' input). */
        private static Exact of(final float[] x, final double[] zs, final int[] labels, final double[] w1,
                                final double[] w2, final double[] e1, final double[] e2, final int rows,
                                final int vocab, final float t) {
            final double[] lpExact = new double[rows];
            final double[] lpBound = new double[rows];
            final double[] hBound = new double[rows];
            // A float32 sum of n terms, accumulated pairwise or in a cascade (PyTorch's CPU reductions) or as a tree
            // (GPU): relative error within (ceil(log2 n) + 2) u of the sum of the magnitudes.
            final double sumError = (Math.ceil(Math.log(Math.max(2, vocab)) / Math.log(2)) + 2) * U;
            final double[] h = new double[rows];
            final double[] spp = new double[rows];
            final double[] sppBudget = new double[rows];
            final double[] g = new double[rows * vocab];
            final double[] gBudget = new double[rows * vocab];
            final double[] gEngine = new double[rows * vocab];
            final double[] sppEngine = new double[rows];
            final double[] logp = new double[vocab];
            final double[] p = new double[vocab];
            for (int r = 0; r < rows; r++) {
                final int o = r * vocab;
                double max = Double.NEGATIVE_INFINITY;
                float maxAbs = 0;
                for (int j = 0; j < vocab; j++) {
                    final double z = zs[o + j];
                    max = Math.max(max, z);
                    if (Double.isFinite(z)) {
                        maxAbs = Math.max(maxAbs, (float) Math.abs(z));
                    }
                }
                final double delta = ROUNDINGS * (Math.ulp(maxAbs) + Math.ulp(1f));
                double s = 0;
                for (int j = 0; j < vocab; j++) {
                    s += Math.exp(zs[o + j] - max);
                }
                final double logS = Math.log(s);
                double entropy = 0;
                double squares = 0;
                for (int j = 0; j < vocab; j++) {
                    logp[j] = (zs[o + j] - max) - logS;
                    p[j] = Math.exp(logp[j]);
                    entropy -= p[j] == 0 ? 0 : p[j] * logp[j];
                    squares += p[j] * p[j];
                }
                h[r] = entropy;
                // verl: entropy = logsumexp(z) - sum(softmax(z) * z), log_prob = z_label - logsumexp(z). The terms
                // that cancel are logsumexp(z) = max + log S and sum p |z|; S (terms within 2 ulp from exp) carries
                // the sum's error, which log turns into an absolute error.
                double sumPz = 0;
                for (int j = 0; j < vocab; j++) {
                    if (p[j] != 0) {
                        sumPz += p[j] * Math.abs(zs[o + j]);
                    }
                }
                final double lse = max + logS;
                final double lseError = U * Math.abs(lse) + sumError + 4 * U;
                hBound[r] = 2 * (lseError + (2 * sumError + 4 * U) * sumPz + U * Math.abs(entropy));
                final int label = labels[r];
                if (label >= 0 && label < vocab) {
                    final double zl = zs[o + label];
                    lpExact[r] = (zl - max) - logS;
                    lpBound[r] = 2 * (lseError + U * (Math.abs(zl) + Math.abs(lpExact[r])));
                } else {
                    lpExact[r] = Double.NaN;
                    lpBound[r] = 0;
                }
                spp[r] = squares;
                sppBudget[r] = 2 * delta * squares;
                // d log_prob / d z_j = [j == label] - p_j; d H / d z_j = -p_j (log p_j + H); z = x / t.
                for (int j = 0; j < vocab; j++) {
                    final double dh = p[j] == 0 ? 0 : -p[j] * (logp[j] + entropy);
                    g[o + j] = (w1[r] * ((j == labels[r] ? 1 : 0) - p[j]) + w2[r] * dh) / t;
                    gBudget[o + j] = p[j] == 0 ? 0
                        : delta * p[j] * (Math.abs(w1[r]) + Math.abs(w2[r]) * (2 + Math.abs(logp[j]) + entropy)) / t;
                }
                engineRow(x, labels[r], w1[r], w2[r], o, vocab, t, max, logS, p, entropy, g, gEngine, r, sppEngine);
                if (e1 != null || e2 != null) {
                    final double u1 = e1 == null ? 0 : e1[r];
                    final double u2 = e2 == null ? 0 : e2[r];
                    for (int j = 0; j < vocab; j++) {
                        final double dh = p[j] == 0 ? 0 : p[j] * Math.abs(logp[j] + entropy);
                        final double moved = (Math.abs((j == labels[r] ? 1 : 0) - p[j]) * u1 + dh * u2) / t;
                        gEngine[o + j] += SECOND_ORDER * moved;
                        gBudget[o + j] += SECOND_ORDER * moved;
                    }
                }
            }
            return new Exact(new CaseOutputs.Referee(h, hBound, hBound),
                new CaseOutputs.Referee(spp, sppBudget, sppEngine),
                new CaseOutputs.Referee(g, gBudget, gEngine), new CaseOutputs.Referee(lpExact, lpBound, lpBound));
        }

        /**
         * The engine's error on one row's gradient and sum of squared probabilities, operation by operation of its
         * vocabulary pass ({@code VocabPass} in the reference module; {@code z = x / t} is float32 on both sides,
         * the exact value's input):
         * <pre>
         *   d = z - m (float32)                 dd_j = u |d_j|
         *   e = exp(d) (canonical exp)          de_j / e_j = expm1(dd_j) + 3u
         *   S = sum e (float partials of 4 terms, double lanes)   dS / S = sum p de / e + 3u
         *   rS = 1 / S, p = e rS (float32)      dp_j / p_j = de_j / e_j + dS / S + 3u
         *   mu = W / S, W = sum e d (float partials)   dmu = (sum e (|d| de / e + dd) + 4u sum e |d| + |mu| dS) / S + u |mu|
         *   gl = w1 / t, ge = w2 / t (float32)  u each
         *   k = fma(-ge, (d - mu), -gl)         dk = dgl + |ge| (dd + dmu + u |d - mu|) + dge |d - mu| + u |k|
         *   g = p k, or fma(p, k, gl) at the label   dg = |k| p dp / p + p dk (+ dgl) + u |g|
         *   sum p^2 = Q / S^2, Q = sum e^2 (float partials)   relative 2 sum p^2 de / e / sum p^2 + 3u + 2 dS / S + u
         * </pre>
         * each times 1.01 for the second-order terms (products of two of these relative errors, each below 2^-16 on
         * rows whose logits span less than 2^8); a logit whose exp is flushed (d below the exp's
         * range) contributes its p (at most 2^-126 / S) instead.
         */
        /** The factor on first-order bounds that covers their second-order terms. */
        private static final double SECOND_ORDER = 1.01;

        private static void engineRow(final float[] x, final int label, final double w1, final double w2, final int o,
                                      final int vocab, final float t, final double max, final double logS,
                                      final double[] p, final double entropy, final double[] g,
                                      final double[] gEngine, final int r, final double[] sppEngine) {
            double weightedDe = 0;
            double mu = 0;
            double sumEd = 0;
            double dW = 0;
            final double[] dd = new double[vocab];
            final double[] de = new double[vocab];
            for (int j = 0; j < vocab; j++) {
                final float z = x[o + j] / t;
                final double d = z - max;
                if (p[j] == 0 || !Double.isFinite(d)) {
                    continue;
                }
                dd[j] = U * Math.abs(d);
                de[j] = Math.expm1(dd[j]) + 3 * U;
                weightedDe += p[j] * de[j];
                mu += p[j] * d;
                sumEd += p[j] * Math.abs(d);
                dW += p[j] * (Math.abs(d) * de[j] + dd[j]);
            }
            // S = sum e_j moves by sum e_j de_j: relative, the p-weighted mean of de (plus the partials' 3u).
            final double dS = weightedDe + 3 * U;
            final double dMu = dW + 4 * U * sumEd + Math.abs(mu) * dS + U * Math.abs(mu);
            final double gl = w1 / (double) t;
            final double ge = w2 / (double) t;
            for (int j = 0; j < vocab; j++) {
                final int at = o + j;
                final float z = x[o + j] / t;
                final double d = z - max;
                if (p[j] == 0 || !Double.isFinite(d)) {
                    // A flushed or -inf exp: p is 0 in the engine, at most 2^-126 / S off.
                    final double k = Math.abs(gl) + Math.abs(ge) * (Math.abs(mu) + 200);
                    gEngine[at] = (j == label ? U * Math.abs(gl) : 0) + k * 0x1p-126 + F32Term.TINY;
                    continue;
                }
                final double dp = de[j] + dS + 3 * U;
                final double k = -gl - ge * (d - mu);
                final double dk = U * Math.abs(gl) + Math.abs(ge) * (dd[j] + dMu + U * Math.abs(d - mu))
                    + U * Math.abs(ge) * Math.abs(d - mu) + U * Math.abs(k);
                final double bound = Math.abs(k) * p[j] * dp + p[j] * dk + (j == label ? U * Math.abs(gl) : 0)
                    + U * Math.abs(g[at]);
                gEngine[at] = SECOND_ORDER * bound + F32Term.TINY;
            }
            double weightedDe2 = 0;
            for (int j = 0; j < vocab; j++) {
                weightedDe2 += p[j] * p[j] * de[j];
            }
            final double q = sppOf(p, vocab);
            sppEngine[r] = SECOND_ORDER * ((2 * weightedDe2 / Math.max(q, Double.MIN_NORMAL) + 3 * U + 2 * dS + U) * q)
                + F32Term.TINY;
        }

        private static double sppOf(final double[] p, final int vocab) {
            double q = 0;
            for (int j = 0; j < vocab; j++) {
                q += p[j] * p[j];
            }
            return q;
        }
    }
}
