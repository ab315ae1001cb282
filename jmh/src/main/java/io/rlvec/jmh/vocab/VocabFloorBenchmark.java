package io.rlvec.jmh.vocab;

import io.rlvec.jmh.LaunchFlags;
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

import io.rlvec.ElementType;
import io.rlvec.engine.Blocks;
import io.rlvec.engine.Vec;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The memory-bandwidth floor of the vocabulary pass (design.md, style.md P12), on the same shapes, types and thread
 * counts as {@link VocabBenchmark}: read every logit once (f32, or bf16 widened in registers) into four vector
 * sums, no other work ({@code stream}), and read it while writing one float32 per logit ({@code streamToGradient}, the
 * backward's traffic); rows run through {@link Blocks}. The exp-throughput floor is {@link VocabExpFloorBenchmark}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class VocabFloorBenchmark {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final VectorSpecies<Short> H = VectorSpecies.of(short.class, VectorShape.forBitSize(Vec.BITS / 2));
    private static final int FL = Vec.FL;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    @Param({"256x32000", "64x151936"})
    public String shape;
    @Param({"f32", "bf16"})
    public String dtype;
    @Param({"1", "2"})
    public int threads;

    private VocabInputs in;
    private Blocks blocks;
    private final float[] partial = new float[1024];
    private MemorySegment seg;
    private boolean bf16;
    private int vocab;
    private final Blocks.Body streamBody = this::streamRow;
    private final Blocks.Body writeBody = this::writeRow;
    private MemorySegment gradSeg;

    @Setup(Level.Trial)
    public void setUp() {
        in = new VocabInputs(shape, dtype);
        blocks = new Blocks(threads);
        seg = in.logits.segment();
        bf16 = in.type == ElementType.BF16;
        vocab = in.vocab;
        gradSeg = in.grad.segment();
        // Answer check: the stream sum equals a scalar sum of the same values (up to float rounding).
        final float s = stream();
        double want = 0;
        for (long i = 0; i < (long) in.rows * vocab; i++) {
            want += in.logits.getFloat(i);
        }
        if (Math.abs(s - want) > 1e-3 * Math.abs(want) + 1) {
            throw new IllegalStateException("stream sum " + s + " vs " + want);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        blocks.close();
        in.close();
    }

    /** One pass over every logit, no math beyond the sum. */
    @Benchmark
    public float stream() {
        blocks.forEach(in.rows, streamBody);
        float s = 0;
        for (int r = 0; r < in.rows; r++) {
            s += partial[r];
        }
        return s;
    }

    /**
     * The backward's memory traffic: read every logit once and write one float32 per logit into the gradient
     * buffer (the value read, widened), no math. The floor of the one-exp backward from saved statistics.
     */
    @Benchmark
    public void streamToGradient() {
        blocks.forEach(in.rows, writeBody);
    }

    private void writeRow(final int r) {
        final long base = (long) r * vocab * (bf16 ? 2 : 4);
        final long gBase = (long) r * vocab * 4;
        int j = 0;
        if (bf16) {
            for (; j <= vocab - FL; j += FL) {
                bf16At(base, j).intoMemorySegment(gradSeg, gBase + 4L * j, LE);
            }
        } else {
            for (; j <= vocab - FL; j += FL) {
                FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE).intoMemorySegment(gradSeg, gBase + 4L * j, LE);
            }
        }
        for (; j < vocab; j++) {
            in.grad.setFloat((long) r * vocab + j, in.logits.getFloat((long) r * vocab + j));
        }
    }

    private void streamRow(final int r) {
        final long base = (long) r * vocab * (bf16 ? 2 : 4);
        FloatVector a = FloatVector.zero(F);
        FloatVector b = FloatVector.zero(F);
        FloatVector c = FloatVector.zero(F);
        FloatVector d = FloatVector.zero(F);
        int j = 0;
        if (bf16) {
            for (; j <= vocab - 4 * FL; j += 4 * FL) {
                a = a.add(bf16At(base, j));
                b = b.add(bf16At(base, j + FL));
                c = c.add(bf16At(base, j + 2 * FL));
                d = d.add(bf16At(base, j + 3 * FL));
            }
        } else {
            for (; j <= vocab - 4 * FL; j += 4 * FL) {
                a = a.add(FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE));
                b = b.add(FloatVector.fromMemorySegment(F, seg, base + 4L * (j + FL), LE));
                c = c.add(FloatVector.fromMemorySegment(F, seg, base + 4L * (j + 2 * FL), LE));
                d = d.add(FloatVector.fromMemorySegment(F, seg, base + 4L * (j + 3 * FL), LE));
            }
        }
        float s = a.add(b).add(c.add(d)).reduceLanes(VectorOperators.ADD);
        for (; j < vocab; j++) {
            s += in.logits.getFloat((long) r * vocab + j);
        }
        partial[r] = s;
    }

    private FloatVector bf16At(final long base, final int j) {
        return ShortVector.fromMemorySegment(H, seg, base + 2L * j, LE).castShape(Vec.I, 0)
            .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }
}
