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

import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * Advantage estimators through {@code Engine.advantages}: GAE at (B, T) = (64, 4096) and (4096, 1024), and the
 * group estimators (grpo, rloo) on 4096 sequences x 1024 tokens in groups of 8 shuffled through the batch, with
 * ragged valid lengths (an outcome reward at each sequence's last valid token). Answer-checked against the
 * reference (same bits) before and after the measurement, and allocation-checked.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 3, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class AdvantageBenchmark {

    @Param({EngineChoice.VECTOR, EngineChoice.REFERENCE})
    public String engine;

    /** estimator@shape; GAE at both of its shapes, the group estimators at 4096 x 1024. */
    @Param({"gae@64x4096", "gae@4096x1024", "grpo@4096x1024", "rloo@4096x1024"})
    public String config;

    private Engine impl;
    private AdvantageSpec spec;
    private TokenBatch batch;
    private OffHeapArray index;
    private OffHeapArray adv;
    private OffHeapArray ret;
    private AdvantageInputs inputs;
    private float[] expected;

    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        final Fixture f = fixture(config);
        spec = f.spec();
        batch = f.tokenBatch();
        index = OffHeapArray.ofLongs(f.ids());
        inputs = new AdvantageInputs().index(index);
        adv = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
        ret = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
        Engines.reference().advantages(spec, batch, inputs, adv, ret);
        expected = adv.toFloatArray();
        impl = EngineChoice.create(engine);
        adv.fill(Float.NaN);
        impl.advantages(spec, batch, inputs, adv, ret);
        AnswerCheck.sameBits(impl.name() + " " + config + " cold: advantages", adv, expected);
        AllocationProbe.prewarm(engine, impl.name() + " advantages " + config,
            () -> impl.advantages(spec, batch, inputs, adv, ret));
    }

    /**
     * The inputs of one configuration (the PyTorch peer in jmh-peer reads the same ones).
     *
     * @param spec    the estimator with gamma 0.99 and lam 0.95.
     * @param rows    sequences.
     * @param width   tokens per sequence (padded).
     * @param rewards token-level rewards, row-major: 0/1 at each sequence's last valid token.
     * @param values  N(0, 1) values.
     * @param mask    the response mask: a valid prefix of 1..width tokens per sequence.
     * @param ids     the uid of each sequence: groups of 8, shuffled through the batch.
     */
    public record Fixture(AdvantageSpec spec, int rows, int width, float[] rewards, float[] values, boolean[] mask,
                          long[] ids) {
        /** @return a padded batch of these rewards, values and mask (owning its columns: close it). */
        public TokenBatch tokenBatch() {
            return TokenBatch.padded(rows, width).column(Column.TOKEN_LEVEL_REWARDS, rewards)
                .column(Column.VALUES, values).mask(mask).build();
        }
    }

    /**
     * @param config {@code estimator@BxT}, e.g. {@code gae@64x4096}.
     * @return the configuration's seeded inputs.
     */
    public static Fixture fixture(final String config) {
        final String[] parts = config.split("@");
        if (parts.length != 2) {
            throw new IllegalArgumentException("config must be estimator@BxT, got '" + config + "'");
        }
        final AdvantageSpec spec = AdvantageSpec.builder(AdvantageEstimator.fromVerl(parts[0])).gamma(0.99).lam(0.95)
            .build();
        final Shape shape = Shape.parse("padded-" + parts[1]);
        final int b = shape.batch();
        final int t = shape.width();
        final SplittableRandom r = new SplittableRandom(Inputs.SEED);
        final float[] rewards = new float[b * t];
        final float[] values = new float[b * t];
        final boolean[] mask = new boolean[b * t];
        for (int i = 0; i < b; i++) {
            final int valid = 1 + r.nextInt(t);
            for (int k = 0; k < t; k++) {
                mask[i * t + k] = k < valid;
                values[i * t + k] = (float) r.nextGaussian();
            }
            rewards[i * t + valid - 1] = r.nextInt(2);
        }
        // Groups of 8, ids shuffled through the batch.
        final long[] ids = new long[b];
        for (int i = 0; i < b; i++) {
            ids[i] = 1000L + i / 8;
        }
        for (int i = b - 1; i > 0; i--) {
            final int j = r.nextInt(i + 1);
            final long x = ids[i];
            ids[i] = ids[j];
            ids[j] = x;
        }
        return new Fixture(spec, b, t, rewards, values, mask, ids);
    }

    @Benchmark
    public OffHeapArray advantages() {
        impl.advantages(spec, batch, inputs, adv, ret);
        return adv;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        try {
            AnswerCheck.sameBits(impl.name() + " " + config + " hot: advantages", adv, expected);
            AllocationProbe.check(engine, impl.name() + " advantages " + config,
                () -> impl.advantages(spec, batch, inputs, adv, ret));
        } finally {
            impl.close();
            adv.close();
            ret.close();
            index.close();
            batch.close();
        }
    }
}
