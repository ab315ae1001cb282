package io.rlvec.jmh.vocab;

import io.rlvec.jmh.LaunchFlags;
import static io.rlvec.CanonicalMath.EXP_LO;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import io.rlvec.Engine;
import io.rlvec.engine.Vec;
import io.rlvec.engine.VectorEngine;
import io.rlvec.engine.VectorMath;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Design study behind the vocabulary kernel (style.md "Fast softmax / entropy on CPU"): the two-pass form (a max
 * pass, then one fused exp pass accumulating S = sum e^(z-m) and W = sum e^(z-m) (z-m)) against the online
 * normaliser (Milakov and Gimelshein: one pass, per-lane running max, rescaling S and W when the max moves), both
 * written as lean float32 prototypes with the same exp ({@link VectorMath#exp}) and the same float accumulators, so
 * that only the algorithm differs; f32, one thread, forward only. {@code engine} is the real forward (two-pass,
 * double sums, entropy) through {@link Engine} for scale. Shapes: rows of 32000 (128 KB, L2-resident), 151936
 * (594 KB) and 262144 (1 MB, beyond this machine's L2 with anything else live).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class VocabDesignBenchmark {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final int FL = Vec.FL;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    @Param({"256x32000", "64x151936", "32x262144"})
    public String shape;

    private VocabInputs in;
    private Engine engine;
    private MemorySegment seg;
    private int rows;
    private int vocab;
    private float t;
    private final double[] sw = new double[2];

    @Setup(Level.Trial)
    public void setUp() {
        in = new VocabInputs(shape, "f32");
        engine = new VectorEngine(1);
        seg = in.logits.segment();
        rows = in.rows;
        vocab = in.vocab;
        t = (float) in.temperature;
        // Answer check: both prototypes give the engine's entropy and log-normaliser to float accuracy.
        in.forward(engine);
        for (int r = 0; r < rows; r++) {
            final long base = 4L * r * vocab;
            final float m = maxRow(base) / t;
            twoPassRow(base, m);
            final double h2 = Math.log(sw[0]) - sw[1] / sw[0];
            final float mo = onlineRow(base);
            final double ho = Math.log(sw[0]) - sw[1] / sw[0];
            final double want = in.entropy.getFloat(r);
            if (Math.abs(h2 - want) > 1e-4 * want || Math.abs(ho - want) > 1e-4 * want || Math.abs(mo - m) > 0) {
                throw new IllegalStateException("row " + r + ": entropy two-pass " + h2 + ", online " + ho
                    + ", engine " + want + "; max " + m + " vs " + mo);
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        ((VectorEngine) engine).close();
        in.close();
    }

    /** The engine's forward (two-pass, double sums, entropy and log-prob written). */
    @Benchmark
    public void engine() {
        in.forward(engine);
    }

    /** Prototype: max pass, then the fused exp pass. */
    @Benchmark
    public double twoPass() {
        double acc = 0;
        for (int r = 0; r < rows; r++) {
            final long base = 4L * r * vocab;
            twoPassRow(base, maxRow(base) / t);
            acc += sw[0] + sw[1];
        }
        return acc;
    }

    /** Prototype: one pass with the online normaliser. */
    @Benchmark
    public double online() {
        double acc = 0;
        for (int r = 0; r < rows; r++) {
            acc += onlineRow(4L * r * vocab) + sw[0] + sw[1];
        }
        return acc;
    }

    private float maxRow(final long base) {
        FloatVector m0 = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        FloatVector m1 = m0;
        FloatVector m2 = m0;
        FloatVector m3 = m0;
        int j = 0;
        for (; j <= vocab - 4 * FL; j += 4 * FL) {
            final FloatVector a = FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE);
            final FloatVector b = FloatVector.fromMemorySegment(F, seg, base + 4L * (j + FL), LE);
            final FloatVector c = FloatVector.fromMemorySegment(F, seg, base + 4L * (j + 2 * FL), LE);
            final FloatVector d = FloatVector.fromMemorySegment(F, seg, base + 4L * (j + 3 * FL), LE);
            m0 = m0.blend(a, a.compare(VectorOperators.GT, m0));
            m1 = m1.blend(b, b.compare(VectorOperators.GT, m1));
            m2 = m2.blend(c, c.compare(VectorOperators.GT, m2));
            m3 = m3.blend(d, d.compare(VectorOperators.GT, m3));
        }
        for (; j <= vocab - FL; j += FL) {
            final FloatVector a = FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE);
            m0 = m0.blend(a, a.compare(VectorOperators.GT, m0));
        }
        float mx = m0.max(m1).max(m2.max(m3)).reduceLanes(VectorOperators.MAX);
        for (; j < vocab; j++) {
            mx = Math.max(mx, seg.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, base + 4L * j));
        }
        return mx;
    }

    private void twoPassRow(final long base, final float m) {
        final FloatVector tv = FloatVector.broadcast(F, t);
        final FloatVector mv = FloatVector.broadcast(F, m);
        FloatVector s = FloatVector.zero(F);
        FloatVector w = s;
        int j = 0;
        for (; j <= vocab - FL; j += FL) {
            final FloatVector d = FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE).div(tv).sub(mv);
            final VectorMask<Float> under = d.compare(VectorOperators.LT, EXP_LO);
            final FloatVector e = VectorMath.exp(d);
            s = s.add(e);
            w = e.fma(d.blend(EXP_LO, under), w);
        }
        double ss = s.reduceLanes(VectorOperators.ADD);
        double ww = w.reduceLanes(VectorOperators.ADD);
        for (; j < vocab; j++) {
            final float d = seg.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, base + 4L * j) / t - m;
            final float e = (float) Math.exp(d);
            ss += e;
            ww += e * Math.max(d, EXP_LO);
        }
        sw[0] = ss;
        sw[1] = ww;
    }

    /** @return the row max; S and W (relative to it) in {@link #sw}. */
    private float onlineRow(final long base) {
        final FloatVector tv = FloatVector.broadcast(F, t);
        // Start from the first vector: s = 1, w = 0 per lane (a -inf start would make 0 * inf = NaN).
        FloatVector m = FloatVector.fromMemorySegment(F, seg, base, LE).div(tv);
        FloatVector s = FloatVector.broadcast(F, 1f);
        FloatVector w = FloatVector.zero(F);
        int j = FL;
        for (; j <= vocab - FL; j += FL) {
            final FloatVector z = FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE).div(tv);
            final FloatVector delta = z.sub(m);
            final VectorMask<Float> gt = delta.compare(VectorOperators.GT, 0f);
            final FloatVector a = delta.neg().blend(delta, gt.not());
            // a = -|delta| <= 0: one exp per element, e = exp(z - m) or exp(m - z)
            final FloatVector e = VectorMath.exp(a);
            final FloatVector ac = a.blend(EXP_LO, a.compare(VectorOperators.LT, EXP_LO));
            // not gt: s += e, w += e * delta; gt (new max z): s = s e + 1, w = e (w - s delta)
            final FloatVector sA = s.add(e);
            final FloatVector wA = e.fma(ac, w);
            final FloatVector sB = s.fma(e, FloatVector.broadcast(F, 1f));
            final FloatVector wB = e.mul(s.mul(ac).add(w));
            s = sA.blend(sB, gt);
            w = wA.blend(wB, gt);
            m = m.blend(z, gt);
        }
        // Merge lanes (and the scalar tail) into the global max, in double.
        float mx = m.reduceLanes(VectorOperators.MAX);
        for (int k = j; k < vocab; k++) {
            mx = Math.max(mx, seg.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, base + 4L * k) / t);
        }
        double ss = 0;
        double ww = 0;
        for (int l = 0; l < FL; l++) {
            final double ml = m.lane(l);
            final double f = Math.exp(ml - mx);
            ss += s.lane(l) * f;
            ww += f * (w.lane(l) + s.lane(l) * (ml - mx));
        }
        for (; j < vocab; j++) {
            final float d = seg.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, base + 4L * j) / t - mx;
            final float e = (float) Math.exp(d);
            ss += e;
            ww += e * Math.max(d, EXP_LO);
        }
        sw[0] = ss;
        sw[1] = ww;
        return mx;
    }
}
