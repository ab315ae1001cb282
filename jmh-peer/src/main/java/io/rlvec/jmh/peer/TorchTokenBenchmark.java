package io.rlvec.jmh.peer;

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

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.KlPenalty;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.jmh.Inputs;
import io.rlvec.jmh.LaunchFlags;

/**
 * The PyTorch peer of {@code PolicyLossBenchmark} and {@code ActorLossBenchmark}: the same padded batches
 * ({@link Inputs#policyBatch}), forward + backward to log_prob through autograd on libtorch 2.7 through DJL.
 *
 * <ul>
 *   <li>{@link #policyLoss}: vanilla PPO clip (0.2 / 0.2, dual clip 3), token-mean: the engine's {@code policyLoss}
 *       with the default spec.</li>
 *   <li>{@link #actorLoss}: PPO clip 0.2 / 0.28 + 0.001 * token-mean low_var_kl: the engine's {@code actorLoss}
 *       from log-probs.</li>
 * </ul>
 * Masked slots hold NaN in some of the engine's inputs (the engine never reads them); the peer gets them replaced by
 * old_log_prob, since PyTorch's {@code x * mask} propagates a NaN. The answer is checked against the engine's
 * before timing ({@link PeerCheck}).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class TorchTokenBenchmark {
    /** {@code padded-BxT} (see {@link io.rlvec.jmh.Shape}). */
    @Param({"padded-64x4096", "padded-8x512"})
    public String shape;
    /** libtorch intra-op threads. */
    @Param({"1", "2"})
    public int threads;

    private static final LossSpec POLICY = LossSpec.builder().lossAggMode(AggMode.TOKEN_MEAN).build();
    private static final LossSpec ACTOR = LossSpec.builder().clipRatioHigh(0.28).lossAggMode(AggMode.TOKEN_MEAN)
        .useKlLoss(true).klLossCoef(0.001).klLossType(KlPenalty.fromVerl("low_var_kl")).build();

    private NDManager trial;
    private NDArray logProb;
    private NDArray old;
    private NDArray ref;
    private NDArray adv;
    private NDArray mask;
    private float tokens;

    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        final io.rlvec.jmh.Shape s = io.rlvec.jmh.Shape.parse(shape);
        if (s.packed()) {
            throw new IllegalArgumentException("the PyTorch peer takes padded shapes only, got " + shape);
        }
        trial = Torch.start(threads);
        try (TokenBatch batch = Inputs.policyBatch(s, Inputs.SEED);
             VectorEngine engine = new VectorEngine(1);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final int n = batch.numTokens();
            final Shape bt = new Shape(s.batch(), s.width());
            final OffHeapArray m = batch.mask();
            final OffHeapArray lp = batch.column(Column.LOG_PROB);
            final OffHeapArray o = batch.column(Column.OLD_LOG_PROB);
            try (OffHeapArray clean = OffHeapArray.allocate(ElementType.F32, n)) {
                double absA = 0;
                int valid = 0;
                for (int i = 0; i < n; i++) {
                    final boolean on = m.getFloat(i) != 0f;
                    clean.setFloat(i, on ? lp.getFloat(i) : o.getFloat(i));
                    if (on) {
                        valid++;
                        absA += Math.abs(batch.column(Column.ADVANTAGES).getFloat(i));
                    }
                }
                tokens = valid;
                logProb = Torch.floats(trial, clean, bt);
                old = Torch.floats(trial, o, bt);
                ref = Torch.floats(trial, batch.column(Column.REF_LOG_PROB), bt);
                adv = Torch.floats(trial, batch.column(Column.ADVANTAGES), bt);
                mask = Torch.floats(trial, m, bt);
                final double termScale = absA / Math.max(valid, 1);

                final PolicyLossResult pr = new PolicyLossResult();
                engine.policyLoss(POLICY, batch, grad, pr);
                try (NDManager call = trial.newSubManager()) {
                    final NDArray[] out = step(call, false);
                    PeerCheck.gradient("PyTorch policy loss " + shape, out[1], grad.toFloatArray(), s.batch(),
                        s.width());
                    PeerCheck.loss("PyTorch policy loss " + shape, out[0].toFloatArray()[0], pr.pgLoss(), termScale);
                }
                final ActorLossResult ar = new ActorLossResult();
                engine.actorLoss(ACTOR, batch, grad, ar);
                try (NDManager call = trial.newSubManager()) {
                    final NDArray[] out = step(call, true);
                    PeerCheck.gradient("PyTorch actor loss " + shape, out[1], grad.toFloatArray(), s.batch(),
                        s.width());
                    PeerCheck.loss("PyTorch actor loss " + shape, out[0].toFloatArray()[0], ar.loss(), termScale);
                }
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        trial.close();
    }

    /** PPO clip + token-mean, forward and backward to log_prob. */
    @Benchmark
    public void policyLoss() {
        try (NDManager call = trial.newSubManager()) {
            step(call, false);
        }
    }

    /** PPO clip + token-mean + 0.001 * low_var_kl, forward and backward to log_prob. */
    @Benchmark
    public void actorLoss() {
        try (NDManager call = trial.newSubManager()) {
            step(call, true);
        }
    }

    private NDArray[] step(final NDManager call, final boolean withKl) {
        final NDArray lp = Torch.leaf(logProb, call);
        final NDArray m = Torch.view(mask, call);
        NDArray loss;
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            loss = withKl
                ? Torch.ppoClipTokenMean(lp, Torch.view(old, call), Torch.view(adv, call), m, tokens, 0.2f, 0.28f, 3f)
                    .add(Torch.lowVarKlTokenMean(lp, Torch.view(ref, call), m, tokens).mul(0.001f))
                : Torch.ppoClipTokenMean(lp, Torch.view(old, call), Torch.view(adv, call), m, tokens, 0.2f, 0.2f, 3f);
            gc.backward(loss);
        }
        return new NDArray[] {loss, lp.getGradient()};
    }
}
