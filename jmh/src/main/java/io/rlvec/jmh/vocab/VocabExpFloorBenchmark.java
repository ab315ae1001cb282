package io.rlvec.jmh.vocab;

import io.rlvec.jmh.LaunchFlags;
import static io.rlvec.CanonicalMath.LN2_HI;
import static io.rlvec.CanonicalMath.LN2_LO;
import static io.rlvec.CanonicalMath.LOG2E;
import static io.rlvec.CanonicalMath.MAGIC_BIAS;
import static io.rlvec.CanonicalMath.MAGIC_BITS;
import static io.rlvec.CanonicalMath.P0;
import static io.rlvec.CanonicalMath.P1;
import static io.rlvec.CanonicalMath.P2;
import static io.rlvec.CanonicalMath.P3;
import static io.rlvec.CanonicalMath.P4;
import static io.rlvec.CanonicalMath.P5;

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

import io.rlvec.CanonicalMath;
import io.rlvec.engine.Blocks;
import io.rlvec.engine.Vec;
import io.rlvec.engine.VectorMath;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The exp-throughput floor of the vocabulary pass (design.md, style.md P12): N * V canonical exps over an
 * L1-resident block of arguments in [-20, 0], accumulated, no other work, rows run through {@link Blocks} as in
 * {@link VocabBenchmark}. {@code exp} uses {@link VectorMath#exp} (with its two range blends);
 * {@code expPolynomial} the same polynomial without them, as the vocabulary kernel inlines it (its arguments are
 * {@code <= 0} and it shares the underflow compare with its clamp). One exp per logit is the forward's count; the
 * forward + backward pair does two.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class VocabExpFloorBenchmark {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final int FL = Vec.FL;
    /** Exp arguments per block: 16 KB of floats, L1-resident. */
    private static final int ARGS = 4096;

    @Param({"256x32000", "64x151936"})
    public String shape;
    @Param({"1", "2"})
    public int threads;

    private int rows;
    private int vocab;
    private Blocks blocks;
    private final float[] args = new float[ARGS];
    private final float[] partial = new float[4096];
    private final Blocks.Body expBody = this::expRow;
    private final Blocks.Body polyBody = this::polyRow;

    @Setup(Level.Trial)
    public void setUp() {
        final String[] p = shape.split("x");
        rows = Integer.parseInt(p[0]);
        vocab = Integer.parseInt(p[1]);
        blocks = new Blocks(threads);
        for (int i = 0; i < ARGS; i++) {
            args[i] = -20f * i / ARGS;
        }
        // Answer check: both variants give the scalar canonical exp's sum over one block.
        double want = 0;
        for (int i = 0; i < ARGS; i++) {
            want += CanonicalMath.exp(args[i]);
        }
        final double perBlock = want;
        final double full = (double) (vocab / ARGS) * perBlock;
        for (final float got : new float[] {exp(), expPolynomial()}) {
            final double perRow = got / rows;
            if (Math.abs(perRow - full) > 1e-3 * full + perBlock) {
                throw new IllegalStateException("exp floor sum " + perRow + " per row, want about " + full);
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        blocks.close();
    }

    /** N * V exps by {@link VectorMath#exp}. */
    @Benchmark
    public float exp() {
        blocks.forEach(rows, expBody);
        return total();
    }

    /** N * V exps by the bare canonical polynomial. */
    @Benchmark
    public float expPolynomial() {
        blocks.forEach(rows, polyBody);
        return total();
    }

    private float total() {
        float s = 0;
        for (int r = 0; r < rows; r++) {
            s += partial[r];
        }
        return s;
    }

    private void expRow(final int r) {
        FloatVector acc = FloatVector.zero(F);
        for (int done = 0; done + ARGS <= vocab; done += ARGS) {
            for (int j = 0; j < ARGS; j += FL) {
                acc = acc.add(VectorMath.exp(FloatVector.fromArray(F, args, j)));
            }
        }
        partial[r] = acc.reduceLanes(VectorOperators.ADD);
    }

    private void polyRow(final int r) {
        FloatVector acc = FloatVector.zero(F);
        for (int done = 0; done + ARGS <= vocab; done += ARGS) {
            for (int j = 0; j < ARGS; j += FL) {
                acc = acc.add(poly(FloatVector.fromArray(F, args, j)));
            }
        }
        partial[r] = acc.reduceLanes(VectorOperators.ADD);
    }

    /** {@link VectorMath#exp} without its range blends (valid on [EXP_LO, 0], as the arguments here). */
    private static FloatVector poly(final FloatVector x) {
        final FloatVector z = x.fma(LOG2E, MAGIC_BIAS);
        final IntVector n = z.reinterpretAsInts().sub(MAGIC_BITS + 127);
        final FloatVector nf = z.sub(MAGIC_BIAS);
        FloatVector r = nf.fma(FloatVector.broadcast(F, -LN2_HI), x);
        r = nf.fma(FloatVector.broadcast(F, -LN2_LO), r);
        FloatVector p = r.fma(P0, P1);
        p = p.fma(r, FloatVector.broadcast(F, P2));
        p = p.fma(r, FloatVector.broadcast(F, P3));
        p = p.fma(r, FloatVector.broadcast(F, P4));
        p = p.fma(r, FloatVector.broadcast(F, P5));
        final FloatVector y = p.fma(r.mul(r), r).add(1f);
        final IntVector n1 = n.lanewise(VectorOperators.ASHR, 1);
        final IntVector n2 = n.sub(n1);
        return y.mul(n1.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats())
            .mul(n2.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats());
    }
}
