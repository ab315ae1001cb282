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

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.KlPenalty;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * dp_actor's composed loss from log-probs through {@link Engine#actorLoss(LossSpec, TokenBatch, OffHeapArray,
 * ActorLossResult)}: vanilla PPO clip + token-mean + low_var_kl KL loss (coef 0.001), forward and d loss / d log_prob,
 * the same work {@code bench/torch_peer.py} times in PyTorch. Checked against the reference cold (setup) and hot
 * (teardown): gradients bit-identical, the composed loss within 2 ulp (three aggregated terms).
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
public class ActorLossBenchmark {

    /** Which implementation runs: {@code vector} or {@code reference}. */
    @Param({EngineChoice.VECTOR, EngineChoice.REFERENCE})
    public String engine;

    /** {@code padded-BxT} or {@code packed-BxT} (see {@link Shape}). */
    @Param({"padded-64x4096", "padded-8x512"})
    public String shape;

    private Engine impl;
    private LossSpec spec;
    private TokenBatch batch;
    private OffHeapArray grad;
    private ActorLossResult result;
    private ActorLossResult expected;
    private float[] expectedGrad;

    /** Builds the inputs and checks the engine's cold answer against the reference. */
    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        spec = LossSpec.builder().clipRatioHigh(0.28).lossAggMode(AggMode.TOKEN_MEAN)
            .useKlLoss(true).klLossCoef(0.001).klLossType(KlPenalty.fromVerl("low_var_kl")).build();
        batch = Inputs.policyBatch(Shape.parse(shape), Inputs.SEED);
        grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
        result = new ActorLossResult();
        expected = new ActorLossResult();
        Engines.reference().actorLoss(spec, batch, grad, expected);
        expectedGrad = grad.toFloatArray();

        impl = EngineChoice.create(engine);
        grad.fill(Float.NaN);
        impl.actorLoss(spec, batch, grad, result);
        check("cold (first call)");
    }

    /** @return the loss (consumed by JMH, so the call cannot be eliminated). */
    @Benchmark
    public float actorLoss() {
        impl.actorLoss(spec, batch, grad, result);
        return result.loss();
    }

    /** Checks the output of the last measured call (compiled code), then frees everything. */
    @TearDown(Level.Trial)
    public void tearDown() {
        try {
            check("hot (last measured call)");
        } finally {
            impl.close();
            grad.close();
            batch.close();
        }
    }

    private void check(final String when) {
        final String what = impl.name() + " actor loss on " + shape + ", " + when;
        AnswerCheck.sameBits(what + ": d loss / d log_prob", grad, expectedGrad);
        final long ulps = AnswerCheck.ulpDistance(result.loss(), expected.loss());
        if (ulps > 2) {
            throw new IllegalStateException(what + ": loss " + result.loss() + " vs reference " + expected.loss()
                + " (" + ulps + " ulp apart, contract <= 2)");
        }
    }
}
