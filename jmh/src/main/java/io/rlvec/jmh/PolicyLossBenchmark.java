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
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;

/**
 * verl's policy loss (vanilla PPO clip by default, any mode with {@code -p mode=}), forward and gradient, through
 * {@link Engine#policyLoss}: the whole call a trainer makes per micro-batch (validation, loss, metrics,
 * d loss / d log_prob).
 *
 * <p>Shapes: a padded (64, 4096) batch, a packed batch of 64 ragged sequences with the same 262 144 tokens, and a
 * small padded (8, 512) one. Inputs are GRPO-like (see {@link Inputs}). The answer is checked against the
 * reference twice: cold, in the setup, and hot, in the teardown on the output of the last measured call
 * (style.md P6: the interpreter and C2 can disagree), so a run that measured a wrong answer fails.
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
public class PolicyLossBenchmark {

    /** Which implementation runs: {@code vector} or {@code reference}. */
    @Param({EngineChoice.VECTOR, EngineChoice.REFERENCE})
    public String engine;

    /** {@code padded-BxT} or {@code packed-BxT} (see {@link Shape}). */
    @Param({"padded-64x4096", "packed-64x4096", "padded-8x512"})
    public String shape;

    /** verl's loss_agg_mode; any of its names (seq-mean-token-sum-norm needs a padded shape). */
    @Param({"token-mean"})
    public String agg;

    /**
     * verl's policy_loss.loss_mode, any of them ({@code -p mode=gspo,sapo,...}); the modes' own keys take verl's
     * defaults, dro's required beta is 0.1, clip_cov/kl_cov select 1% of the tokens, bypass_mode runs ppo_clip
     * with token TIS weights (2.0) and a token_k1 rejection (0.5_2).
     */
    @Param({"vanilla"})
    public String mode;

    private Engine impl;
    private LossSpec spec;
    private TokenBatch batch;
    private OffHeapArray grad;
    private PolicyLossResult result;
    private PolicyLossResult expected;
    private float[] expectedGrad;

    /**
     * Builds the inputs, computes the reference answer and checks the engine's cold answer against it (then, in a
     * smoke run only, pre-warms the vector engine: {@link AllocationProbe#prewarm}).
     */
    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        spec = spec(agg, mode);
        batch = Inputs.policyBatch(Shape.parse(shape), Inputs.SEED);
        grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
        result = new PolicyLossResult();
        expected = new PolicyLossResult();
        Engines.reference().policyLoss(spec, batch, grad, expected);
        expectedGrad = grad.toFloatArray();

        impl = EngineChoice.create(engine);
        // NaN everywhere first: a slot the engine forgets to write (masked ones included) cannot pass the check.
        grad.fill(Float.NaN);
        impl.policyLoss(spec, batch, grad, result);
        check("cold (first call)");
        AllocationProbe.prewarm(engine, impl.name() + " policy loss on " + shape + " " + agg,
            () -> impl.policyLoss(spec, batch, grad, result));
    }

    /**
     * The spec a trial measures (the PyTorch peer in jmh-peer builds the same one): verl's defaults for the mode's
     * own keys, dro_beta 0.1, clip_cov_ratio and kl_cov_ratio 0.01, bypass_mode over token TIS weights (2.0) and a
     * token_k1 rejection (0.5_2).
     *
     * @param agg  verl's loss_agg_mode.
     * @param mode verl's policy_loss.loss_mode.
     * @return the spec.
     */
    public static LossSpec spec(final String agg, final String mode) {
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(AggMode.fromVerl(agg)).set("loss_mode", mode)
            .droBeta(0.1).clipCovRatio(0.01).klCovRatio(0.01);
        if ("bypass_mode".equals(mode)) {
            // ppo_clip over token-level TIS weights and a two-sided token k1 rejection.
            b.rolloutCorrection(io.rlvec.RolloutCorrectionSpec.builder().rolloutIs("token").rolloutIsThreshold(2.0)
                .rolloutRs("token_k1").rolloutRsThreshold("0.5_2").build());
        }
        return b.build();
    }

    /** @return the loss (consumed by JMH, so the call cannot be eliminated). */
    @Benchmark
    public float policyLoss() {
        impl.policyLoss(spec, batch, grad, result);
        return result.pgLoss();
    }

    /**
     * Checks the output of the last measured call (compiled code) and what a hot call allocates
     * ({@link AllocationProbe}), then frees everything.
     */
    @TearDown(Level.Trial)
    public void tearDown() {
        try {
            check("hot (last measured call)");
            AllocationProbe.check(engine, impl.name() + " policy loss on " + shape + " " + agg,
                () -> impl.policyLoss(spec, batch, grad, result));
        } finally {
            impl.close();
            grad.close();
            batch.close();
        }
    }

    private void check(final String when) {
        final String what = impl.name() + " " + mode + " on " + shape + " " + agg + ", " + when;
        AnswerCheck.sameBits(what + ": d pg_loss / d log_prob", grad, expectedGrad);
        AnswerCheck.policyLoss(what, result, expected);
    }
}
