package io.rlvec.jmh;

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
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;

/**
 * verl's critic value loss ({@code compute_value_loss}: clipped vpreds, the larger of the two squared errors,
 * aggregated), forward, metrics and d vf_loss / d vpreds, through {@link Engine#valueLoss}: the call a PPO trainer
 * makes per critic micro-batch. Inputs: {@link Inputs#valueBatch}, cliprange_value 0.5 (verl's default). Checked
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
public class ValueLossBenchmark {

    /** Which implementation runs: {@code vector} or {@code reference}. */
    @Param({EngineChoice.VECTOR, EngineChoice.REFERENCE})
    public String engine;

    /** {@code padded-BxT} or {@code packed-BxT} (see {@link Shape}). */
    @Param({"padded-64x4096", "packed-64x4096", "padded-8x512"})
    public String shape;

    /** The critic's loss_agg_mode; any of verl's names (seq-mean-token-sum-norm needs a padded shape). */
    @Param({"token-mean"})
    public String agg;

    private Engine impl;
    private LossSpec spec;
    private TokenBatch batch;
    private OffHeapArray grad;
    private ValueLossResult result;
    private ValueLossResult expected;
    private float[] expectedGrad;

    /**
     * Builds the inputs, computes the reference answer and checks the engine's cold answer against it (then, in a
     * smoke run only, pre-warms the vector engine: {@link AllocationProbe#prewarm}).
     */
    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        spec = LossSpec.builder().lossAggMode(AggMode.fromVerl(agg)).cliprangeValue(0.5).build();
        batch = Inputs.valueBatch(Shape.parse(shape), Inputs.SEED);
        grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
        result = new ValueLossResult();
        expected = new ValueLossResult();
        Engines.reference().valueLoss(spec, batch, grad, expected);
        expectedGrad = grad.toFloatArray();

        impl = EngineChoice.create(engine);
        // NaN everywhere first: a slot the engine forgets to write (masked ones included) cannot pass the check.
        grad.fill(Float.NaN);
        impl.valueLoss(spec, batch, grad, result);
        check("cold (first call)");
        AllocationProbe.prewarm(engine, impl.name() + " value loss on " + shape + " " + agg,
            () -> impl.valueLoss(spec, batch, grad, result));
    }

    /** @return the loss (consumed by JMH, so the call cannot be eliminated). */
    @Benchmark
    public float valueLoss() {
        impl.valueLoss(spec, batch, grad, result);
        return result.vfLoss();
    }

    /**
     * Checks the output of the last measured call (compiled code) and what a hot call allocates
     * ({@link AllocationProbe}), then frees everything.
     */
    @TearDown(Level.Trial)
    public void tearDown() {
        try {
            check("hot (last measured call)");
            AllocationProbe.check(engine, impl.name() + " value loss on " + shape + " " + agg,
                () -> impl.valueLoss(spec, batch, grad, result));
        } finally {
            impl.close();
            grad.close();
            batch.close();
        }
    }

    private void check(final String when) {
        final String what = impl.name() + " value loss on " + shape + " " + agg + ", " + when;
        AnswerCheck.sameBits(what + ": d vf_loss / d vpreds", grad, expectedGrad);
        AnswerCheck.valueLoss(what, result, expected);
    }
}
