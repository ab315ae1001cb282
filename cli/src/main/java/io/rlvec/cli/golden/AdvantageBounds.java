package io.rlvec.cli.golden;

import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageSpec;
import io.rlvec.VerlRelease;

/**
 * verl's outcome advantage estimators in double from the float32 rewards, with a bound on the engine's error and
 * an estimate of a float32 evaluation's (verl's), per token: the referees of {@code out.advantages} and
 * {@code out.returns} ({@link AdvantageHandler}).
 *
 * <p>The exact value: the scores {@code S_i} (the row sums of the rewards, in double: exact to a few units of
 * 2^-53), the group statistics and the per-sequence expression in double, broadcast over the sequence's tokens times
 * the mask; whitened estimators then through verl's {@code masked_whiten} in double.
 *
 * <p>The engine's error, from its operations ({@code Advantages} in the reference module): a score is its
 * double row sum rounded to float32, so it lies within {@code delta_i} of {@code S_i}, the larger distance from
 * {@code S_i} of the float32 roundings of {@code S_i -+ eps_i} ({@code eps_i} a bound on the double sum's error;
 * rounding is monotone); group statistics and the per-sequence expression are double, rounded to float32 once.
 * With {@code D} the group's largest {@code delta}:
 * <pre>
 *   s - mean                      delta_i + D
 *   (s - mean) / (std + eps)      (delta_i + D + |a| dstd) / (std + eps - dstd),  dstd = D sqrt(n / (n - 1))
 *                                 (the std is 1-Lipschitz in the centred scores' L2 norm over sqrt(n - 1))
 *   rloo  (s - mean) n / (n - 1)  (delta_i + D) n / (n - 1);  rloo_vectorized (n s - sum) / (n - 1) the same
 *   opo   s - sum(len s) / sum(len)                  delta_i + D
 *   gpg   alpha (s - mean) / f_norm                  alpha (delta_i + D) / f_norm
 *   grpo_passk  (s_best - s_2nd) [/ (std + eps)]     2 D [+ |a| dstd] over (std + eps - dstd); where float32 may
 *               pick another best sample, each candidate may hold the value or 0
 * </pre>
 * plus the final rounding ({@code u |a|}, u = 2^-24) and the double arithmetic ({@code 2^-48 (n + 4) M / den}).
 * masked_whiten ({@code rf++_baseline}, gdpo): the engine's mean and variance in double of its float32 inputs,
 * shift and scale rounded to float32, then {@code (x - shift) * scale} in float32 (two roundings): an input error
 * {@code e_t} moves the mean by at most {@code max e}, the standard deviation by at most
 * {@code E = sqrt(sum e^2 / (N - 1))}, so {@code |dz| <= (e_t + max e + u |mean|) s' + |z| E s' + 3u |z|} with
 * {@code s' = 1 / (sigma - E)} (the shift's rounding; the scale's, the subtraction's and the product's).
 *
 * <p>verl's budget (float32 scores, statistics and expression): an estimate, not a proof ({@code rigorous} false):
 * {@code 16 (T + n) u M' / den}, M' the largest magnitude among the group's scores and the rows' sums of |r|,
 * carried through the whitening like the engine's. Where verl is farther than that from the exact value and the
 * engine is within its bound, the check is a TORCH_LESS_ACCURATE deviation, never a FAIL of a correct engine.
 */
final class AdvantageBounds {
    private static final double U = 0x1p-24;
    private static final double MASK_EPS = 1e-8;

    /** Per token: the exact value, the engine's error bound and verl's budget. */
    record Bounded(double[] x, double[] engine, double[] verl) {
        CaseOutputs.Referee referee() {
            return new CaseOutputs.Referee(x, verl, engine);
        }
    }

    /** Per sequence: the exact value, the engine's error bound and verl's budget (before the broadcast). */
    private record PerSeq(double[] a, double[] engine, double[] verl) {
    }

    private AdvantageBounds() {
    }

    /** @return whether {@link #outcome} judges the estimator. */
    static boolean covers(final AdvantageEstimator e) {
        return switch (e) {
            case GRPO, GRPO_VECTORIZED, GRPO_PASSK, RLOO, RLOO_VECTORIZED, OPO, GPG, REINFORCE_PLUS_PLUS_BASELINE,
                 GDPO -> true;
            default -> false;
        };
    }

    /**
     * @param rewards    the token-level rewards, row-major (b, t).
     * @param mask       the response mask.
     * @param ids        the group id of each sequence.
     * @param components gdpo's reward components (one score per sequence each, in the spec's key order), or null.
     * @return the advantages' referee (the returns are the same values), or null where the case is not judged (a
     *         reward not finite, a gpg nonzero count float32 may decide either way, fewer than two valid tokens to
     *         whiten).
     */
    static Bounded outcome(final AdvantageSpec spec, final double[] rewards, final double[] mask, final double[] ids,
                           final double[][] components, final int b, final int t) {
        for (final double r : rewards) {
            if (!Double.isFinite(r)) {
                return null;
            }
        }
        final AdvantageEstimator e = spec.estimator();
        final double[] s = new double[b];
        final double[] delta = new double[b];
        final double[] scale = new double[b];
        for (int i = 0; i < b; i++) {
            double sum = 0;
            double abs = 0;
            for (int k = i * t; k < (i + 1) * t; k++) {
                sum += rewards[k];
                abs += Math.abs(rewards[k]);
            }
            s[i] = sum;
            scale[i] = abs;
            delta[i] = scoreError(sum, (t + 4) * 0x1p-52 * abs);
        }
        final Bounded perToken;
        if (e == AdvantageEstimator.GDPO) {
            perToken = gdpo(spec, s, delta, scale, mask, ids, components, b, t);
        } else {
            final PerSeq p = perSequence(e, spec, s, delta, scale, ids, mask, b, t);
            if (p == null) {
                return null;
            }
            final Bounded broadcast = broadcast(p, mask, b, t);
            perToken = e == AdvantageEstimator.REINFORCE_PLUS_PLUS_BASELINE ? whiten(broadcast, mask) : broadcast;
        }
        return perToken;
    }

    /**
     * The largest distance from {@code s} of the float32 rounding of any value within {@code eps} of it (rounding
     * is monotone: the ends decide), plus {@code eps}.
     */
    private static double scoreError(final double s, final double eps) {
        final double lo = (float) (s - eps);
        final double hi = (float) (s + eps);
        return Math.max(Math.abs(lo - s), Math.abs(hi - s)) + eps;
    }

    private static PerSeq perSequence(final AdvantageEstimator e, final AdvantageSpec spec, final double[] s,
                                      final double[] delta, final double[] scale, final double[] ids,
                                      final double[] mask, final int b, final int t) {
        final double[] a = new double[b];
        final double[] eng = new double[b];
        final double[] verl = new double[b];
        int nonZero = 0;
        for (int i = 0; i < b; i++) {
            nonZero += s[i] != 0 ? 1 : 0;
            if (e == AdvantageEstimator.GPG && s[i] != 0 && Math.abs(s[i]) <= delta[i]) {
                return null; // float32 may count this score as zero or not
            }
        }
        final double eps = spec.epsilon();
        for (int i = 0; i < b; i++) {
            int n = 0;
            double sum = 0;
            double weighted = 0;
            double lengths = 0;
            double d = 0;
            double m = 0;
            for (int j = 0; j < b; j++) {
                if (ids[j] == ids[i]) {
                    n++;
                    sum += s[j];
                    final double len = rowCount(mask, j, t);
                    weighted += len * s[j];
                    lengths += len;
                    d = Math.max(d, delta[j]);
                    m = Math.max(m, Math.max(Math.abs(s[j]), scale[j]));
                }
            }
            final double mean = n > 1 ? sum / n : 0.0;
            double sq = 0;
            for (int j = 0; j < b; j++) {
                if (ids[j] == ids[i]) {
                    sq += (s[j] - mean) * (s[j] - mean);
                }
            }
            final double centred = s[i] - mean;
            final double dCentred = delta[i] + (n > 1 ? d : 0);
            final double arithmetic = 0x1p-48 * (n + 4) * m;
            final double verlScale = 16 * (t + n) * U * m;
            switch (e) {
                case GRPO, GRPO_VECTORIZED, GRPO_PASSK -> {
                    final double floor = e == AdvantageEstimator.GRPO_VECTORIZED
                        && spec.release() == VerlRelease.V2026_01 ? eps : 0.0;
                    final boolean norm = spec.normAdvByStd();
                    final double std = n > 1 ? Math.sqrt(Math.max(sq / (n - 1), floor)) : 1.0;
                    final double dStd = n > 1 ? d * Math.sqrt(n / (n - 1.0)) : 0.0;
                    final double den = norm ? std + eps : 1.0;
                    final double room = den - (norm ? dStd : 0);
                    if (room <= 0) {
                        return null;
                    }
                    if (e == AdvantageEstimator.GRPO_PASSK) {
                        passK(s, delta, ids, i, den, room, dStd, norm, arithmetic, verlScale, a, eng, verl);
                        continue;
                    }
                    a[i] = centred / den;
                    eng[i] = (dCentred + (norm ? Math.abs(a[i]) * dStd : 0)) / room + U * Math.abs(a[i])
                        + arithmetic / den;
                    verl[i] = verlScale / den * (1 + Math.abs(a[i]));
                }
                case REINFORCE_PLUS_PLUS_BASELINE -> {
                    a[i] = centred;
                    eng[i] = dCentred + U * Math.abs(a[i]) + arithmetic;
                    verl[i] = verlScale;
                }
                case RLOO, RLOO_VECTORIZED -> {
                    final double c = n;
                    a[i] = n > 1 ? centred * c / (c - 1) : e == AdvantageEstimator.RLOO ? s[i] : 0.0;
                    eng[i] = (n > 1 ? (delta[i] + d) * c / (c - 1) : e == AdvantageEstimator.RLOO ? delta[i] : 0)
                        + U * Math.abs(a[i]) + arithmetic * 2;
                    verl[i] = 2 * verlScale;
                }
                case OPO -> {
                    final double baseline = n > 1 && lengths > 0 ? weighted / lengths : 0.0;
                    a[i] = s[i] - baseline;
                    eng[i] = delta[i] + (n > 1 ? d : 0) + U * Math.abs(a[i]) + arithmetic * t;
                    verl[i] = verlScale * (1 + t);
                }
                case GPG -> {
                    final double alpha = (double) b / Math.max(nonZero, 1);
                    a[i] = alpha * centred / spec.fNorm();
                    eng[i] = alpha * dCentred / Math.abs(spec.fNorm()) + U * Math.abs(a[i])
                        + arithmetic * alpha / Math.abs(spec.fNorm());
                    verl[i] = verlScale * (1 + alpha) / Math.abs(spec.fNorm());
                }
                default -> throw new IllegalStateException("not an outcome estimator: " + e);
            }
        }
        return new PerSeq(a, eng, verl);
    }

    /**
     * Pass@k for sequence i: its value where it is the group's best sample (r_best - r_second, over std + eps when
     * normalised), 0 elsewhere; where float32 may rank another sample best, it may hold the value or 0.
     */
    private static void passK(final double[] s, final double[] delta, final double[] ids, final int i,
                              final double den, final double room, final double dStd, final boolean norm,
                              final double arithmetic, final double verlScale, final double[] a, final double[] eng,
                              final double[] verl) {
        int best = -1;
        int second = -1;
        double d = 0;
        for (int j = 0; j < s.length; j++) {
            if (ids[j] != ids[i]) {
                continue;
            }
            d = Math.max(d, delta[j]);
            if (best < 0 || s[j] > s[best]) {
                second = best;
                best = j;
            } else if (second < 0 || s[j] > s[second]) {
                second = j;
            }
        }
        final double value = (s[best] - s[second]) / den;
        // The best and second scores each within D of theirs (float32 may also rank another sample second: its
        // score is then within D of the second's as well).
        final double err = (2 * d + (norm ? Math.abs(value) * dStd : 0)) / room
            + U * Math.abs(value) + arithmetic / den;
        // Another sample may be ranked best by float32 where its score is within both errors of the best one.
        final boolean candidate = i == best || s[best] - s[i] <= delta[best] + delta[i];
        final boolean open = candidate && countCandidates(s, delta, ids, best) > 1;
        a[i] = i == best ? value : 0.0;
        eng[i] = open ? Math.abs(value) + err : i == best ? err : 0.0;
        verl[i] = (open ? Math.abs(value) : 0) + verlScale / den * (1 + Math.abs(value));
    }

    private static int countCandidates(final double[] s, final double[] delta, final double[] ids, final int best) {
        int c = 0;
        for (int j = 0; j < s.length; j++) {
            if (ids[j] == ids[best] && s[best] - s[j] <= delta[best] + delta[j]) {
                c++;
            }
        }
        return c;
    }

    private static double rowCount(final double[] mask, final int row, final int t) {
        double c = 0;
        for (int k = row * t; k < (row + 1) * t; k++) {
            c += mask[k];
        }
        return c;
    }

    /** Per token: the sequence's value times the mask (an exact product for a 0/1 mask). */
    private static Bounded broadcast(final PerSeq p, final double[] mask, final int b, final int t) {
        final double[] x = new double[b * t];
        final double[] eng = new double[b * t];
        final double[] verl = new double[b * t];
        for (int i = 0; i < b; i++) {
            for (int k = i * t; k < (i + 1) * t; k++) {
                x[k] = p.a[i] * mask[k];
                eng[k] = p.engine[i] * Math.abs(mask[k]);
                verl[k] = p.verl[i] * Math.abs(mask[k]);
            }
        }
        return new Bounded(x, eng, verl);
    }

    /**
     * gdpo: per reward component (or the rewards' scores where the spec names none), grpo's per-sequence values;
     * their float32 weighted sum (products and additions in component order, {@link F32Term}); broadcast and
     * whitened.
     */
    private static Bounded gdpo(final AdvantageSpec spec, final double[] s, final double[] delta,
                                final double[] scale, final double[] mask, final double[] ids,
                                final double[][] components, final int b, final int t) {
        final int count = components == null ? 1 : components.length;
        final F32Term[] combined = new F32Term[b];
        final double[] verl = new double[b];
        for (int c = 0; c < count; c++) {
            final double[] cs = components == null ? s : components[c];
            final double[] cd = new double[b];
            final double[] cScale = new double[b];
            for (int i = 0; i < b; i++) {
                cd[i] = components == null ? delta[i] : 0;
                cScale[i] = components == null ? scale[i] : Math.abs(cs[i]);
            }
            final PerSeq p = perSequence(AdvantageEstimator.GRPO, spec, cs, cd, cScale, ids, mask, b,
                components == null ? t : 1);
            if (p == null) {
                return null;
            }
            final F32Term w = F32Term.constant(spec.gdpoRewardWeight(c));
            for (int i = 0; i < b; i++) {
                final F32Term value = new F32Term(p.a[i], p.engine[i]);
                // A power-of-two weight (1 by default) scales exactly: no rounding.
                final double frac = Math.abs(w.v()) / Math.scalb(1.0, Math.getExponent(w.v()));
                final F32Term term = w.v() != 0 && frac == 1.0 ? value.timesExact(w.v()) : value.times(w);
                combined[i] = c == 0 ? term : combined[i].plus(term);
                verl[i] += Math.abs(w.v()) * p.verl[i] + 4 * U * Math.abs(combined[i].v());
            }
        }
        final double[] a = new double[b];
        final double[] eng = new double[b];
        for (int i = 0; i < b; i++) {
            a[i] = combined[i].v();
            eng[i] = combined[i].e();
        }
        return whiten(broadcast(new PerSeq(a, eng, verl), mask, b, t), mask);
    }

    /**
     * verl's masked_whiten of the bounded values, times the mask (see the class comment for the bounds).
     *
     * @return the whitened values, or null with fewer than two valid tokens (verl raises).
     */
    static Bounded whiten(final Bounded in, final double[] mask) {
        return whiten(in, mask, true);
    }

    /**
     * verl's masked_whiten of the bounded values: mean and unbiased variance over the valid tokens, every element
     * shifted and scaled (then times the mask where {@code timesMask}).
     *
     * @return the whitened values, or null with fewer than two valid tokens (verl raises).
     */
    static Bounded whiten(final Bounded in, final double[] mask, final boolean timesMask) {
        if (in == null) {
            return null;
        }
        final double[] x = in.x;
        double n = 0;
        double sum = 0;
        double maxE = 0;
        double maxV = 0;
        double sumE2 = 0;
        double sumV2 = 0;
        double maxAbs = 0;
        for (int k = 0; k < x.length; k++) {
            if (mask[k] != 0) {
                n++;
                sum += x[k];
                maxE = Math.max(maxE, in.engine[k]);
                maxV = Math.max(maxV, in.verl[k]);
                sumE2 += in.engine[k] * in.engine[k];
                sumV2 += in.verl[k] * in.verl[k];
                maxAbs = Math.max(maxAbs, Math.abs(x[k]));
            }
        }
        if (n < 2) {
            return null;
        }
        final double mean = sum / (n + MASK_EPS);
        double sq = 0;
        for (int k = 0; k < x.length; k++) {
            if (mask[k] != 0) {
                sq += (x[k] - mean) * (x[k] - mean);
            }
        }
        final double var = sq / (n + MASK_EPS) * (n / (n - 1));
        final double sigma = Math.sqrt(var + MASK_EPS);
        final double dSigma = Math.sqrt(sumE2 / (n - 1));
        final double dSigmaV = Math.sqrt(sumV2 / (n - 1)) + 16 * n * U * maxAbs;
        if (sigma - dSigma <= 0) {
            return null;
        }
        final double s = 1 / sigma;
        final double sRoom = 1 / (sigma - dSigma);
        final double arithmetic = 0x1p-48 * (n + 4) * maxAbs * sRoom;
        final double[] z = new double[x.length];
        final double[] eng = new double[x.length];
        final double[] verl = new double[x.length];
        for (int k = 0; k < x.length; k++) {
            if (timesMask && mask[k] == 0) {
                continue; // times the mask: exactly 0 on both sides
            }
            z[k] = (x[k] - mean) * s * (timesMask ? mask[k] : 1);
            final double az = Math.abs(z[k]);
            // The input's error and the mean's, the shift's rounding; the std's move; the scale's rounding, the
            // subtraction's and the product's (3u |z|).
            eng[k] = (in.engine[k] + maxE + U * Math.abs(mean)) * sRoom + az * dSigma * sRoom + 3 * U * az
                + arithmetic;
            verl[k] = (in.verl[k] + maxV + 16 * n * U * maxAbs) * sRoom * (1 + az)
                + az * dSigmaV / Math.max(sigma - dSigmaV, sigma / 2);
        }
        return new Bounded(z, eng, verl);
    }

    /** @return whether {@link #recurrence} judges the estimator. */
    static boolean coversRecurrence(final AdvantageEstimator e) {
        return e == AdvantageEstimator.GAE || e == AdvantageEstimator.REINFORCE_PLUS_PLUS
            || e == AdvantageEstimator.REMAX;
    }

    /**
     * The backward recurrences, in double with float32 bounds ({@link F32Term}) taken operation by operation in the
     * order both verl and the engine apply them (float32 on both sides: one bound serves both, verl's doubled as
     * a margin for its different but equivalent masking arithmetic):
     * <pre>
     *   gae                  delta = (r_t + gamma next) - v_t ; cand = delta + (gamma lam) last ; where m_t:
     *                        next = v_t, last = cand ; adv_t = last (every position) ; returns = last + v_t ;
     *                        advantages = masked_whiten(adv, m) at every position
     *   reinforce_plus_plus  fresh = r_t + gamma run ; 2026-01: ret = fresh, run = fresh m ; 2026-08: ret = fresh m,
     *                        run = fresh where m_t ; advantages = masked_whiten(ret, m) m
     *   remax                acc += r_t m_t ; returns = acc ; advantages = acc - baseline m_t
     * </pre>
     * gamma and gamma * lam are the float32 scalars torch multiplies by (a Python float times a float32 tensor).
     *
     * @param values    gae's values, else null.
     * @param baselines remax's per-sequence baselines, else null.
     * @return {advantages, returns}, or null where an input is not finite or fewer than two tokens are valid for a
     *         whitening.
     */
    static Bounded[] recurrence(final AdvantageSpec spec, final double[] rewards, final double[] values,
                                final double[] baselines, final double[] mask, final int b, final int t) {
        for (int k = 0; k < rewards.length; k++) {
            if (!Double.isFinite(rewards[k]) || values != null && !Double.isFinite(values[k])) {
                return null;
            }
        }
        final int n = b * t;
        final F32Term[] adv = new F32Term[n];
        final F32Term[] ret = new F32Term[n];
        final F32Term gamma = F32Term.constant(spec.gamma());
        final boolean carry = spec.release() != VerlRelease.V2026_01;
        for (int i = 0; i < b; i++) {
            F32Term next = F32Term.of(0);
            F32Term last = F32Term.of(0);
            F32Term run = F32Term.of(0);
            F32Term acc = F32Term.of(0);
            for (int k = (i + 1) * t - 1; k >= i * t; k--) {
                final F32Term r = F32Term.of(rewards[k]);
                final boolean valid = mask[k] != 0;
                switch (spec.estimator()) {
                    case GAE -> {
                        final F32Term v = F32Term.of(values[k]);
                        final F32Term delta = r.plus(gamma.times(next)).minus(v);
                        final F32Term cand = delta.plus(F32Term.constant(spec.gamma() * spec.lam()).times(last));
                        if (valid) {
                            next = v;
                            last = cand;
                        }
                        adv[k] = last;
                        ret[k] = last.plus(v);
                    }
                    case REINFORCE_PLUS_PLUS -> {
                        final F32Term fresh = r.plus(gamma.times(run));
                        if (carry) {
                            ret[k] = valid ? fresh.timesExact(mask[k]) : F32Term.of(0);
                            run = valid ? fresh : run;
                        } else {
                            ret[k] = fresh;
                            run = valid ? fresh.timesExact(mask[k]) : F32Term.of(0);
                        }
                    }
                    case REMAX -> {
                        acc = valid ? acc.plus(r.timesExact(mask[k])) : acc;
                        ret[k] = acc;
                        adv[k] = valid ? acc.minus(F32Term.of(baselines[i]).timesExact(mask[k])) : acc;
                    }
                    default -> throw new IllegalStateException("not a recurrence: " + spec.estimator());
                }
            }
        }
        final Bounded returns = bounded(ret, 2);
        return switch (spec.estimator()) {
            case GAE -> {
                final Bounded whitened = whiten(bounded(adv, 2), mask, false);
                yield whitened == null ? null : new Bounded[] {whitened, returns};
            }
            case REINFORCE_PLUS_PLUS -> {
                final Bounded whitened = whiten(returns, mask, true);
                yield whitened == null ? null : new Bounded[] {whitened, returns};
            }
            default -> new Bounded[] {bounded(adv, 2), returns};
        };
    }

    /** Terms as a referee's arrays: the F32Term bound for the engine, {@code verlFactor} times it for verl. */
    private static Bounded bounded(final F32Term[] terms, final double verlFactor) {
        final double[] x = new double[terms.length];
        final double[] e = new double[terms.length];
        final double[] v = new double[terms.length];
        for (int k = 0; k < terms.length; k++) {
            x[k] = terms[k].v();
            e[k] = terms[k].e();
            v[k] = verlFactor * terms[k].e();
        }
        return new Bounded(x, e, v);
    }

    /** @return whether {@link #tokenBaseline} judges the estimator. */
    static boolean coversTokenBaseline(final AdvantageEstimator e) {
        return e == AdvantageEstimator.OPTIMAL_TOKEN_BASELINE || e == AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE;
    }

    /**
     * The optimal-token baselines (see {@code TokenBaseline} in the reference module for verl's formulas) in double
     * with the engine's error, operation by operation: the returns {@code G} and the cumulative weights {@code W}
     * are double sums rounded per element (their rounding, plus each weight's float32 error, {@link F32Term}: the
     * weight {@code 1 - 2 exp(lp) + sum_pi_squared} cancels where the token's probability is near 1); the group sums
     * move by {@code sum(|W| dG + |G| dW)} and {@code sum(dW)}; the baseline's quotient, its rounding and the final
     * float32 subtraction follow. verl's budget: the same plus float32 group sums ({@code 16 (n + T) u} of their
     * magnitudes), an estimate.
     *
     * @param isw the rollout IS weights, or null.
     * @return {advantages, returns}, or null where an input is not finite.
     */
    static Bounded[] tokenBaseline(final AdvantageSpec spec, final double[] rewards, final double[] lp,
                                   final double[] spi, final double[] isw, final double[] mask, final double[] ids,
                                   final int b, final int t) {
        for (int k = 0; k < rewards.length; k++) {
            if (!Double.isFinite(rewards[k]) || !Double.isFinite(lp[k]) || !Double.isFinite(spi[k])
                || isw != null && !Double.isFinite(isw[k])) {
                return null;
            }
        }
        final boolean tir = spec.estimator() == AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE;
        final int n = b * t;
        final double[] g = new double[n];
        final double[] dg = new double[n];
        final double[] w = new double[n];
        final double[] dw = new double[n];
        final int[] valid = new int[b];
        for (int i = 0; i < b; i++) {
            double acc = 0;
            double abs = 0;
            for (int k = (i + 1) * t - 1; k >= i * t; k--) {
                acc += rewards[k] * mask[k];
                abs += Math.abs(rewards[k] * mask[k]);
                g[k] = acc;
                dg[k] = scoreError(acc, (t + 4) * 0x1p-52 * abs);
            }
            double cum = 0;
            double cumErr = 0;
            double cumAbs = 0;
            for (int k = i * t; k < (i + 1) * t; k++) {
                F32Term wt = F32Term.constant(1).minus(F32Term.of(lp[k]).exp().timesExact(2)).plus(F32Term.of(spi[k]));
                if (isw != null) {
                    final F32Term iw = F32Term.of(isw[k]);
                    wt = wt.times(iw.times(iw));
                }
                cum += wt.v() * mask[k];
                cumErr += wt.e() * Math.abs(mask[k]);
                cumAbs += Math.abs(wt.v() * mask[k]);
                w[k] = cum;
                dw[k] = cumErr + scoreError(cum, (t + 4) * 0x1p-52 * cumAbs);
                valid[i] += mask[k] != 0 ? 1 : 0;
            }
        }
        // Groups (tir: empty trajectories left out), positions, sums and their errors.
        final int[] members = new int[b];
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < b; j++) {
                members[i] += ids[j] == ids[i] && (!tir || valid[j] > 0) ? 1 : 0;
            }
        }
        final double eps = spec.epsilon();
        final double[] x = new double[n];
        final double[] eng = new double[n];
        final double[] verl = new double[n];
        for (int i = 0; i < b; i++) {
            final int cut = spec.handleZeroTail() && members[i] >= 2 ? zeroTailFrom(valid, ids, i, tir)
                : Integer.MAX_VALUE;
            final boolean member = members[i] >= 2 && (!tir || valid[i] > 0);
            int p = 0;
            for (int k = i * t; k < (i + 1) * t; k++) {
                final boolean on = mask[k] != 0;
                final int pos = tir ? p : k - i * t;
                double base = 0;
                double dBase = 0;
                double vBase = 0;
                if (member && (!tir || on) && pos < cut) {
                    double num = 0;
                    double den = 0;
                    double dNum = 0;
                    double dDen = 0;
                    double mag = 0;
                    int count = 0;
                    for (int j = 0; j < b; j++) {
                        if (ids[j] != ids[i] || members[j] < 2 || tir && valid[j] == 0) {
                            continue;
                        }
                        final int at = tir ? nthValid(mask, j, t, pos) : j * t + pos;
                        if (at < 0) {
                            continue;
                        }
                        final double mj = tir ? 1 : mask[at];
                        num += g[at] * w[at] * mj;
                        den += w[at] * mj;
                        dNum += (Math.abs(w[at]) * dg[at] + Math.abs(g[at]) * dw[at] + dg[at] * dw[at]) * Math.abs(mj);
                        dDen += dw[at] * Math.abs(mj);
                        mag += Math.abs(g[at] * w[at] * mj);
                        count++;
                    }
                    final double d = den + eps;
                    base = num / d;
                    final double room = Math.abs(d) - dDen;
                    dBase = room > 0 ? (dNum + Math.abs(base) * dDen) / room : Double.POSITIVE_INFINITY;
                    dBase += U * Math.abs(base) + 0x1p-48 * (count + 4) * mag / Math.max(room, Double.MIN_NORMAL);
                    vBase = 16 * (count + t) * U * (mag + Math.abs(base) * Math.abs(den)) / Math.max(room,
                        Double.MIN_NORMAL);
                }
                final double a = tir && !on ? 0 : g[k] - base;
                x[k] = a * mask[k];
                eng[k] = on ? dg[k] + dBase + U * Math.abs(a) : 0;
                verl[k] = on ? 4 * eng[k] + vBase + 16 * t * U * Math.abs(g[k]) : 0;
                p += tir && on ? 1 : 0;
            }
        }
        final double[] rx = new double[n];
        final double[] re = new double[n];
        final double[] rv = new double[n];
        for (int k = 0; k < n; k++) {
            rx[k] = g[k];
            re[k] = dg[k];
            rv[k] = 4 * dg[k] + 16 * t * U * Math.abs(g[k]);
        }
        return new Bounded[] {new Bounded(x, eng, verl), new Bounded(rx, re, rv)};
    }

    /** @return the index of row j's p-th valid token, or -1. */
    private static int nthValid(final double[] mask, final int j, final int t, final int p) {
        int c = 0;
        for (int k = j * t; k < (j + 1) * t; k++) {
            if (mask[k] != 0) {
                if (c == p) {
                    return k;
                }
                c++;
            }
        }
        return -1;
    }

    /** handle_zero_tail: the position from which a group's unique longest trajectory gets baseline 0. */
    private static int zeroTailFrom(final int[] valid, final double[] ids, final int i, final boolean tir) {
        int max = -1;
        int second = -1;
        int maxCount = 0;
        for (int j = 0; j < valid.length; j++) {
            if (ids[j] != ids[i] || tir && valid[j] == 0) {
                continue;
            }
            if (valid[j] > max) {
                second = max;
                max = valid[j];
                maxCount = 1;
            } else if (valid[j] == max) {
                maxCount++;
                second = Math.max(second, valid[j]);
            } else {
                second = Math.max(second, valid[j]);
            }
        }
        return maxCount == 1 && valid[i] == max && max > second ? second : Integer.MAX_VALUE;
    }
}
