package io.rlvec.engine;

import static io.rlvec.reference.KlLoss.KLD_CLAMP;
import static io.rlvec.reference.KlLoss.RATIO_CLAMP;
import static io.rlvec.reference.KlLoss.ROW_BLOCK;
import static io.rlvec.reference.KlLoss.SLOTS;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.reference.KlLoss;
import io.rlvec.reference.TorchOps;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector twins of {@link KlLoss}: the per-token KL estimators and the full KL over the vocabulary, bit-identical
 * to the reference on every elementwise output (same float32 operations in the same order, the canonical exp,
 * compare + blend with torch's NaN semantics instead of {@code FloatVector.min/max}, style.md P13).
 *
 * <p>Token kernels run over fixed blocks of {@link #TOKEN_BLOCK} tokens, full-KL kernels over rows; both through
 * {@link Blocks}, so results do not depend on the thread count. Row sums of the full KL follow the reference's
 * written order ({@link KlLoss#ROW_BLOCK} blocks, {@link KlLoss#SLOTS} float slots) with {@link #NACC}
 * accumulators that rotate after every vector: vector q of a block adds into accumulator q mod NACC, which holds
 * slots (q mod NACC) * lanes ... + lanes - 1, exactly the reference's slot of each element. One exp polynomial per
 * loop body, one loop per method (style.md P2). Not thread-safe (one instance per engine).
 */
final class KlKernel {
    /** Tokens per parallel block of the per-token kernels (blocks are fixed by the data, never by threads). */
    static final int TOKEN_BLOCK = 8192;

    private static final VectorSpecies<Float> F = Vec.F;
    private static final int FL = Vec.FL;
    /** Rotating accumulators per row-sum block: SLOTS float slots of FL lanes each (4, 2 or 1). */
    static final int NACC = SLOTS / FL;
    /** bf16 loads: as many 16-bit lanes as float lanes, in a vector half as wide (style.md P7). */
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(Vec.BITS / 2));
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(Vec.LE);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(Vec.LE);

    private static final FloatVector ZERO = FloatVector.zero(F);
    private static final FloatVector ONE = FloatVector.broadcast(F, 1f);
    private static final FloatVector MINUS_ONE = FloatVector.broadcast(F, -1f);
    private static final FloatVector HALF = FloatVector.broadcast(F, 0.5f);
    private static final FloatVector RATIO_LO = FloatVector.broadcast(F, -RATIO_CLAMP);
    private static final FloatVector RATIO_HI = FloatVector.broadcast(F, RATIO_CLAMP);
    private static final FloatVector KLD_LO = FloatVector.broadcast(F, -KLD_CLAMP);
    private static final FloatVector KLD_HI = FloatVector.broadcast(F, KLD_CLAMP);

    private final TokenBody tokenBody = new TokenBody();
    private final RowBody rowBody = new RowBody();
    private double[] rowT = new double[0];

    // ---------------------------------------------------------------- per-token estimators

    /** {@code Engine.klPenalty} after validation. */
    void penalty(final KlPenalty kl, final TokenBatch batch, final OffHeapArray kldOut, final OffHeapArray gradOut,
                 final Blocks blocks) {
        penalty(kl, batch.column(Column.LOG_PROB), batch, kldOut, gradOut, blocks);
    }

    /** The same with the policy's log-probs from {@code logProb} (the in-reward penalty reads old_log_prob). */
    void penalty(final KlPenalty kl, final OffHeapArray logProb, final TokenBatch batch, final OffHeapArray kldOut,
                 final OffHeapArray gradOut, final Blocks blocks) {
        final TokenBody b = tokenBody;
        b.kl = kl;
        b.lp = logProb.segment();
        b.ref = batch.column(Column.REF_LOG_PROB).segment();
        b.mask = batch.mask().segment();
        b.kld = kldOut.segment();
        b.grad = gradOut == null ? null : gradOut.segment();
        b.n = batch.numTokens();
        blocks.forEach((b.n + TOKEN_BLOCK - 1) / TOKEN_BLOCK, b);
    }

    /** Per-call parameters of the token kernels; reused so that a call allocates nothing. */
    private static final class TokenBody implements Blocks.Body {
        KlPenalty kl;
        MemorySegment lp;
        MemorySegment ref;
        MemorySegment mask;
        MemorySegment kld;
        MemorySegment grad;
        int n;

        @Override
        public void run(final int block) {
            final int lo = block * TOKEN_BLOCK;
            final int hi = Math.min(n, lo + TOKEN_BLOCK);
            final boolean st = kl.straightThrough();
            final int end = switch (kl.estimator()) {
                case K1 -> k1(lp, ref, mask, kld, grad, lo, hi, st);
                case ABS -> abs(lp, ref, mask, kld, grad, lo, hi, st);
                case K2 -> k2(lp, ref, mask, kld, grad, lo, hi, st);
                case K3 -> k3(lp, ref, mask, kld, grad, lo, hi, st);
                case FULL -> throw new IllegalStateException("full is rejected by Checks.klPenalty");
            };
            for (int t = end; t < hi; t++) {
                final long o = (long) t * Float.BYTES;
                float value = 0f;
                float g = 0f;
                if (mask.get(F32, o) != 0f) {
                    final float l = lp.get(F32, o);
                    final float r = ref.get(F32, o);
                    value = KlLoss.penalty(kl, l, r);
                    g = KlLoss.gradient(kl, l, r);
                }
                kld.set(F32, o, value);
                if (grad != null) {
                    grad.set(F32, o, g);
                }
            }
        }
    }

    // Loop-carried vectors (accumulators, running maxima) start from FloatVector.zero/broadcast inside the method,
    // never from a static final constant: a loop phi merging a constant vector object with computed vectors
    // forces C2 to box every computed value (measured 40 B/logit in the full-KL row sums).
    //
    // The loop bodies call the Vector API directly, without load/store helpers: in the k3 body (exp polynomial
    // included) C2 reaches NodeCountInliningCutoff and leaves later small helpers out of line, which boxes every
    // vector passing through them (style.md P2; measured 16 B/token before). The straight-through choice is a
    // blend with an all-true/all-false mask, not a conditional: a vector merged across a branch that the profile
    // never took was boxed after recompilation (measured 6 B/token).

    /** @return all lanes set when {@code st}, none otherwise (a compare, so no vector crosses a branch). */
    private static VectorMask<Float> straightThroughLanes(final boolean st) {
        return ZERO.compare(VectorOperators.LT, st ? 1f : 0f);
    }

    private static int k1(final MemorySegment lp, final MemorySegment ref, final MemorySegment mask,
                          final MemorySegment kld, final MemorySegment grad, final int lo, final int hi,
                          final boolean st) {
        final VectorMask<Float> stLanes = straightThroughLanes(st);
        int i = lo;
        for (; i + FL <= hi; i += FL) {
            final long o = (long) i * Float.BYTES;
            final VectorMask<Float> valid = FloatVector.fromMemorySegment(F, mask, o, Vec.LE)
                .compare(VectorOperators.NE, 0f);
            final FloatVector d = FloatVector.fromMemorySegment(F, lp, o, Vec.LE)
                .sub(FloatVector.fromMemorySegment(F, ref, o, Vec.LE));
            // straight-through: (b - b) + d with b = 0.5 (d * d), verl's detach expression
            final FloatVector b = HALF.mul(d.mul(d));
            ZERO.blend(d.blend(b.sub(b).add(d), stLanes), valid).intoMemorySegment(kld, o, Vec.LE);
            if (grad != null) {
                ZERO.blend(ONE.blend(d, stLanes), valid).intoMemorySegment(grad, o, Vec.LE);
            }
        }
        return i;
    }

    private static int abs(final MemorySegment lp, final MemorySegment ref, final MemorySegment mask,
                           final MemorySegment kld, final MemorySegment grad, final int lo, final int hi,
                           final boolean st) {
        final VectorMask<Float> stLanes = straightThroughLanes(st);
        int i = lo;
        for (; i + FL <= hi; i += FL) {
            final long o = (long) i * Float.BYTES;
            final VectorMask<Float> valid = FloatVector.fromMemorySegment(F, mask, o, Vec.LE)
                .compare(VectorOperators.NE, 0f);
            final FloatVector d = FloatVector.fromMemorySegment(F, lp, o, Vec.LE)
                .sub(FloatVector.fromMemorySegment(F, ref, o, Vec.LE));
            final FloatVector a = d.abs();
            final FloatVector b = HALF.mul(d.mul(d));
            ZERO.blend(a.blend(b.sub(b).add(a), stLanes), valid).intoMemorySegment(kld, o, Vec.LE);
            if (grad != null) {
                // torch's sign: 1 above 0, -1 below, 0 at +-0 and for NaN.
                final FloatVector sign = ZERO.blend(ONE, d.compare(VectorOperators.GT, 0f))
                    .blend(MINUS_ONE, d.compare(VectorOperators.LT, 0f));
                ZERO.blend(sign.blend(d, stLanes), valid).intoMemorySegment(grad, o, Vec.LE);
            }
        }
        return i;
    }

    private static int k2(final MemorySegment lp, final MemorySegment ref, final MemorySegment mask,
                          final MemorySegment kld, final MemorySegment grad, final int lo, final int hi,
                          final boolean st) {
        final VectorMask<Float> stLanes = straightThroughLanes(st);
        int i = lo;
        for (; i + FL <= hi; i += FL) {
            final long o = (long) i * Float.BYTES;
            final VectorMask<Float> valid = FloatVector.fromMemorySegment(F, mask, o, Vec.LE)
                .compare(VectorOperators.NE, 0f);
            final FloatVector d = FloatVector.fromMemorySegment(F, lp, o, Vec.LE)
                .sub(FloatVector.fromMemorySegment(F, ref, o, Vec.LE));
            final FloatVector b = HALF.mul(d.mul(d));
            ZERO.blend(b.blend(b.sub(b).add(b), stLanes), valid).intoMemorySegment(kld, o, Vec.LE);
            if (grad != null) {
                ZERO.blend(d, valid).intoMemorySegment(grad, o, Vec.LE);
            }
        }
        return i;
    }

    private static int k3(final MemorySegment lp, final MemorySegment ref, final MemorySegment mask,
                          final MemorySegment kld, final MemorySegment grad, final int lo, final int hi,
                          final boolean st) {
        final VectorMask<Float> stLanes = straightThroughLanes(st);
        int i = lo;
        for (; i + FL <= hi; i += FL) {
            final long o = (long) i * Float.BYTES;
            final VectorMask<Float> valid = FloatVector.fromMemorySegment(F, mask, o, Vec.LE)
                .compare(VectorOperators.NE, 0f);
            final FloatVector l = FloatVector.fromMemorySegment(F, lp, o, Vec.LE);
            final FloatVector r = FloatVector.fromMemorySegment(F, ref, o, Vec.LE);
            final FloatVector raw = r.sub(l);
            // torch.clamp with NaN passing through: the two comparisons are false for NaN and disjoint otherwise.
            final VectorMask<Float> rawLow = raw.compare(VectorOperators.LT, -RATIO_CLAMP);
            final VectorMask<Float> rawHigh = raw.compare(VectorOperators.GT, RATIO_CLAMP);
            final FloatVector kl = raw.blend(RATIO_LO, rawLow).blend(RATIO_HI, rawHigh);
            final FloatVector ratio = VectorMath.exp(kl);
            final FloatVector k = ratio.sub(kl).sub(1f);
            final VectorMask<Float> kLow = k.compare(VectorOperators.LT, -KLD_CLAMP);
            final VectorMask<Float> kHigh = k.compare(VectorOperators.GT, KLD_CLAMP);
            final FloatVector value = k.blend(KLD_LO, kLow).blend(KLD_HI, kHigh);
            final FloatVector d = l.sub(r);
            final FloatVector b = HALF.mul(d.mul(d));
            ZERO.blend(value.blend(b.sub(b).add(value), stLanes), valid).intoMemorySegment(kld, o, Vec.LE);
            if (grad != null) {
                // Both clamps pass the gradient on the closed interval (NaN compares false: no gradient); the
                // straight-through gradient is k2's, d.
                final VectorMask<Float> passes = raw.compare(VectorOperators.GE, -RATIO_CLAMP)
                    .and(raw.compare(VectorOperators.LE, RATIO_CLAMP))
                    .and(k.compare(VectorOperators.GE, -KLD_CLAMP))
                    .and(k.compare(VectorOperators.LE, KLD_CLAMP));
                final FloatVector g = ZERO.blend(ONE.sub(ratio), passes).blend(d, stLanes);
                ZERO.blend(g, valid).intoMemorySegment(grad, o, Vec.LE);
            }
        }
        return i;
    }

    // ---------------------------------------------------------------- full KL over the vocabulary

    /**
     * {@code Engine.klFull} after validation; with {@code accumulate} the gradient is added to gradLogits (masked
     * rows left alone) instead of written.
     */
    void full(final Logits policy, final Logits reference, final double temperature, final OffHeapArray rowMask,
              final OffHeapArray kldOut, final OffHeapArray upstream, final OffHeapArray gradLogits,
              final boolean accumulate, final Blocks blocks) {
        final RowBody b = rowBody;
        b.z = policy.data().segment();
        b.zBf16 = policy.type() == ElementType.BF16;
        b.zStride = policy.rowStride();
        b.zr = reference.data().segment();
        b.zrBf16 = reference.type() == ElementType.BF16;
        b.zrStride = reference.rowStride();
        b.vocab = policy.vocab();
        b.temperature = temperature;
        b.rowMask = rowMask == null ? null : rowMask.segment();
        b.kld = kldOut.segment();
        b.upstream = upstream == null ? null : upstream.segment();
        b.grad = gradLogits == null ? null : gradLogits.segment();
        b.accumulate = accumulate;
        if (rowT.length < policy.rows()) {
            rowT = new double[Math.max(policy.rows(), rowT.length * 2)];
        }
        b.rowT = rowT;
        blocks.forEach(policy.rows(), b);
    }

    /** Per-call parameters of the row kernel; one block is one row. */
    private static final class RowBody implements Blocks.Body {
        MemorySegment z;
        boolean zBf16;
        long zStride;
        MemorySegment zr;
        boolean zrBf16;
        long zrStride;
        int vocab;
        double temperature;
        MemorySegment rowMask;
        MemorySegment kld;
        MemorySegment upstream;
        MemorySegment grad;
        boolean accumulate;
        double[] rowT;

        @Override
        public void run(final int r) {
            final long rowOff = (long) r * Float.BYTES;
            final long zBase = r * zStride;
            if (rowMask != null && rowMask.get(F32, rowOff) == 0f) {
                kld.set(F32, rowOff, 0f);
                if (grad != null && !accumulate) {
                    zeroRow(grad, zBase, vocab);
                }
                return;
            }
            final long zrBase = r * zrStride;
            final float t = (float) temperature;
            // See KlLoss.full: max(z) / t == max(z / t), and + 0f makes a -0 maximum +0.
            final float ma = (rawMax(z, zBase, vocab, zBf16) + 0f) / t;
            final float mb = (rawMax(zr, zrBase, vocab, zrBf16) + 0f) / t;
            final double sa = sumsA(z, zBase, zBf16, zr, zrBase, zrBf16, vocab, t, ma, mb, rowT, r);
            final double ta = rowT[r];
            final double sb = sumExp(zr, zrBase, zrBf16, vocab, t, mb);
            final double logSa = StrictMath.log(sa);
            kld.set(F32, rowOff, (float) (ta / sa - logSa + StrictMath.log(sb)));
            if (grad != null) {
                final float s = (float) (upstream.get(F32, rowOff) / temperature);
                gradient(z, zBase, zBf16, zr, zrBase, zrBf16, vocab, t, ma, mb, (float) logSa, (float) (ta / sa), s,
                    grad, accumulate);
            }
        }
    }

    /** Full-width load of FL logits at element {@code e}, widening bf16 in registers (style.md P7). */
    private static FloatVector loadLogits(final MemorySegment seg, final long e, final boolean bf16) {
        if (bf16) {
            // bf16 is the high half of a float: sign-extend to int, shift left 16 (the extension is shifted out).
            return ShortVector.fromMemorySegment(S, seg, e * 2, Vec.LE).castShape(Vec.I, 0)
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
        }
        return FloatVector.fromMemorySegment(F, seg, e * Float.BYTES, Vec.LE);
    }

    private static float logit(final MemorySegment seg, final long e, final boolean bf16) {
        return bf16 ? Float.intBitsToFloat((seg.get(I16, e * 2) & 0xFFFF) << 16) : seg.get(F32, e * Float.BYTES);
    }

    private static void zeroRow(final MemorySegment grad, final long base, final int vocab) {
        int i = 0;
        for (; i + FL <= vocab; i += FL) {
            ZERO.intoMemorySegment(grad, (base + i) * Float.BYTES, Vec.LE);
        }
        for (; i < vocab; i++) {
            grad.set(F32, (base + i) * Float.BYTES, 0f);
        }
    }

    /** Row maximum with torch's NaN propagation (compare + blend, P13); lanes then tail in index order. */
    private static float rawMax(final MemorySegment seg, final long base, final int vocab, final boolean bf16) {
        FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (; i + FL <= vocab; i += FL) {
            final FloatVector x = loadLogits(seg, base + i, bf16);
            m = m.blend(x, x.compare(VectorOperators.GT, m).or(x.compare(VectorOperators.NE, x)));
        }
        float max = Float.NEGATIVE_INFINITY;
        for (int l = 0; l < FL; l++) {
            max = TorchOps.maximum(m.lane(l), max);
        }
        for (; i < vocab; i++) {
            max = TorchOps.maximum(logit(seg, base + i, bf16), max);
        }
        return max;
    }

    /**
     * S_a = sum e^(a - ma) (returned) and T_a = sum e^(a - ma) ((a - ma) - (b - mb)) (into {@code tOut[r]}), in
     * the reference's block/slot order: full vectors into rotating accumulators, then per slot in order 0..15 its
     * vector partial, plus the row's tail element of that slot (scalar, same arithmetic), into the double sums.
     * No vector value is merged across branches (such merges box vectors in C2).
     */
    private static double sumsA(final MemorySegment z, final long zBase, final boolean zBf16, final MemorySegment zr,
                                final long zrBase, final boolean zrBf16, final int vocab, final float t,
                                final float ma, final float mb, final double[] tOut, final int r) {
        double sa = 0;
        double ta = 0;
        for (int bs = 0; bs < vocab; bs += ROW_BLOCK) {
            final int be = Math.min(vocab, bs + ROW_BLOCK);
            final int fullEnd = bs + (be - bs) / FL * FL;
            FloatVector s0 = FloatVector.zero(F);
            FloatVector s1 = FloatVector.zero(F);
            FloatVector s2 = FloatVector.zero(F);
            FloatVector s3 = FloatVector.zero(F);
            FloatVector t0 = FloatVector.zero(F);
            FloatVector t1 = FloatVector.zero(F);
            FloatVector t2 = FloatVector.zero(F);
            FloatVector t3 = FloatVector.zero(F);
            for (int i = bs; i < fullEnd; i += FL) {
                final FloatVector da = loadLogits(z, zBase + i, zBf16).div(t).sub(ma);
                final FloatVector db = loadLogits(zr, zrBase + i, zrBf16).div(t).sub(mb);
                final FloatVector ea = VectorMath.exp(da);
                final FloatVector ns = s0.add(ea);
                final FloatVector nt = t0.add(ea.mul(da.sub(db)));
                if (NACC == 1) {
                    s0 = ns;
                    t0 = nt;
                } else if (NACC == 2) {
                    s0 = s1;
                    s1 = ns;
                    t0 = t1;
                    t1 = nt;
                } else {
                    s0 = s1;
                    s1 = s2;
                    s2 = s3;
                    s3 = ns;
                    t0 = t1;
                    t1 = t2;
                    t2 = t3;
                    t3 = nt;
                }
            }
            // Rotate back so that accumulator k holds slots k*FL .. k*FL + FL - 1.
            for (int q = (fullEnd - bs) / FL % NACC; q != 0 && q < NACC; q++) {
                if (NACC == 2) {
                    final FloatVector x = s0;
                    s0 = s1;
                    s1 = x;
                    final FloatVector y = t0;
                    t0 = t1;
                    t1 = y;
                } else if (NACC == 4) {
                    final FloatVector x = s0;
                    s0 = s1;
                    s1 = s2;
                    s2 = s3;
                    s3 = x;
                    final FloatVector y = t0;
                    t0 = t1;
                    t1 = t2;
                    t2 = t3;
                    t3 = y;
                }
            }
            final int base16 = bs + ((fullEnd - bs) & -SLOTS);
            for (int j = 0; j < SLOTS; j++) {
                final int k = j / FL;
                final int l = j % FL;
                float sj = k == 0 ? s0.lane(l) : (k == 1 ? s1.lane(l) : (k == 2 ? s2.lane(l) : s3.lane(l)));
                float tj = k == 0 ? t0.lane(l) : (k == 1 ? t1.lane(l) : (k == 2 ? t2.lane(l) : t3.lane(l)));
                final int v = base16 + j;
                if (v >= fullEnd && v < be) {
                    final float da = logit(z, zBase + v, zBf16) / t - ma;
                    final float db = logit(zr, zrBase + v, zrBf16) / t - mb;
                    final float ea = CanonicalMath.exp(da);
                    sj += ea;
                    tj += ea * (da - db);
                }
                sa += sj;
                ta += tj;
            }
        }
        tOut[r] = ta;
        return sa;
    }

    /** S_b = sum e^(b - mb) in the reference's block/slot order (as {@link #sumsA}). */
    private static double sumExp(final MemorySegment zr, final long zrBase, final boolean zrBf16, final int vocab,
                                 final float t, final float mb) {
        double sb = 0;
        for (int bs = 0; bs < vocab; bs += ROW_BLOCK) {
            final int be = Math.min(vocab, bs + ROW_BLOCK);
            final int fullEnd = bs + (be - bs) / FL * FL;
            FloatVector s0 = FloatVector.zero(F);
            FloatVector s1 = FloatVector.zero(F);
            FloatVector s2 = FloatVector.zero(F);
            FloatVector s3 = FloatVector.zero(F);
            for (int i = bs; i < fullEnd; i += FL) {
                final FloatVector ns = s0.add(VectorMath.exp(loadLogits(zr, zrBase + i, zrBf16).div(t).sub(mb)));
                if (NACC == 1) {
                    s0 = ns;
                } else if (NACC == 2) {
                    s0 = s1;
                    s1 = ns;
                } else {
                    s0 = s1;
                    s1 = s2;
                    s2 = s3;
                    s3 = ns;
                }
            }
            for (int q = (fullEnd - bs) / FL % NACC; q != 0 && q < NACC; q++) {
                if (NACC == 2) {
                    final FloatVector x = s0;
                    s0 = s1;
                    s1 = x;
                } else if (NACC == 4) {
                    final FloatVector x = s0;
                    s0 = s1;
                    s1 = s2;
                    s2 = s3;
                    s3 = x;
                }
            }
            final int base16 = bs + ((fullEnd - bs) & -SLOTS);
            for (int j = 0; j < SLOTS; j++) {
                final int k = j / FL;
                final int l = j % FL;
                float sj = k == 0 ? s0.lane(l) : (k == 1 ? s1.lane(l) : (k == 2 ? s2.lane(l) : s3.lane(l)));
                final int v = base16 + j;
                if (v >= fullEnd && v < be) {
                    sj += CanonicalMath.exp(logit(zr, zrBase + v, zrBf16) / t - mb);
                }
                sb += sj;
            }
        }
        return sb;
    }

    /** Writes (or adds) s * p_v ((da - db) - k) for every element of the row; see KlLoss#fullGradient. */
    private static void gradient(final MemorySegment z, final long zBase, final boolean zBf16, final MemorySegment zr,
                                 final long zrBase, final boolean zrBf16, final int vocab, final float t,
                                 final float ma, final float mb, final float logSa, final float k, final float s,
                                 final MemorySegment grad, final boolean accumulate) {
        int i = 0;
        for (; i + FL <= vocab; i += FL) {
            final FloatVector da = loadLogits(z, zBase + i, zBf16).div(t).sub(ma);
            final FloatVector db = loadLogits(zr, zrBase + i, zrBf16).div(t).sub(mb);
            final FloatVector p = VectorMath.exp(da.sub(logSa));
            final FloatVector g = p.mul(da.sub(db).sub(k)).mul(s);
            final long o = (zBase + i) * Float.BYTES;
            if (accumulate) {
                FloatVector.fromMemorySegment(F, grad, o, Vec.LE).add(g).intoMemorySegment(grad, o, Vec.LE);
            } else {
                g.intoMemorySegment(grad, o, Vec.LE);
            }
        }
        for (; i < vocab; i++) {
            final float g = KlLoss.fullGradient(logit(z, zBase + i, zBf16), logit(zr, zrBase + i, zrBf16), t, ma, mb,
                logSa, k, s);
            final long o = (zBase + i) * Float.BYTES;
            grad.set(F32, o, accumulate ? grad.get(F32, o) + g : g);
        }
    }
}
