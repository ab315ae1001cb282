package io.rlvec.jmh;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * verl's {@code agg_loss} with its gradient through {@link Engine#aggLoss}, on a padded (64, 4096) batch by
 * default: a masked reduction plus one gradient write per token, so close to a memory-bound floor. Checked
 * against the reference cold (setup) and hot (teardown), like {@link PolicyLossBenchmark}.
 *
 * <p>Not final: JMH generates subclasses of benchmark classes.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 3, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class AggLossBenchmark {

    /** Which implementation runs: {@code vector} or {@code reference}. */
    @Param({EngineChoice.VECTOR, EngineChoice.REFERENCE})
    public String engine;

    /** {@code padded-BxT} or {@code packed-BxT} (see {@link Shape}). */
    @Param({"padded-64x4096"})
    public String shape;

    /** verl's loss_agg_mode; any of its names (seq-mean-token-sum-norm needs a padded shape). */
    @Param({"token-mean"})
    public String agg;

    private Engine impl;
    private LossSpec spec;
    private TokenBatch batch;
    private OffHeapArray lossMat;
    private OffHeapArray grad;
    private AggResult result;
    private AggResult expected;
    private float[] expectedGrad;

    /**
     * Builds the inputs, computes the reference answer and checks the engine's cold answer against it (then, in a
     * smoke run only, pre-warms the vector engine: {@link AllocationProbe#prewarm}).
     */
    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        spec = LossSpec.builder().lossAggMode(AggMode.fromVerl(agg)).build();
        final SplittableRandom rnd = new SplittableRandom(Inputs.SEED);
        final Inputs.Layout layout = Inputs.layout(Shape.parse(shape), rnd);
        batch = Inputs.maskBatch(layout);
        lossMat = OffHeapArray.of(Inputs.lossValues(layout, rnd));
        grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
        result = new AggResult();
        expected = new AggResult();
        Engines.reference().aggLoss(spec, batch, lossMat, grad, expected);
        expectedGrad = grad.toFloatArray();

        impl = EngineChoice.create(engine);
        // NaN everywhere first: a slot the engine forgets to write (masked ones included) cannot pass the check.
        grad.fill(Float.NaN);
        impl.aggLoss(spec, batch, lossMat, grad, result);
        check("cold (first call)");
        AllocationProbe.prewarm(engine, impl.name() + " agg_loss on " + shape + " " + agg,
            () -> impl.aggLoss(spec, batch, lossMat, grad, result));
    }

    /** @return the loss (consumed by JMH, so the call cannot be eliminated). */
    @Benchmark
    public float aggLoss() {
        impl.aggLoss(spec, batch, lossMat, grad, result);
        return result.loss();
    }

    /**
     * Checks the output of the last measured call (compiled code) and what a hot call allocates
     * ({@link AllocationProbe}), then frees everything.
     */
    @TearDown(Level.Trial)
    public void tearDown() {
        try {
            check("hot (last measured call)");
            AllocationProbe.check(engine, impl.name() + " agg_loss on " + shape + " " + agg,
                () -> impl.aggLoss(spec, batch, lossMat, grad, result));
        } finally {
            impl.close();
            grad.close();
            lossMat.close();
            batch.close();
        }
    }

    private void check(final String when) {
        final String what = impl.name() + " agg_loss on " + shape + " " + agg + ", " + when;
        AnswerCheck.sameBits(what + ": d loss / d loss_mat", grad, expectedGrad);
        AnswerCheck.aggLoss(what, result, expected);
    }
}
