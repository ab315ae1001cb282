package io.rlvec.jmh.peer;

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
import org.openjdk.jmh.infra.BenchmarkParams;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;

import io.rlvec.Column;
import io.rlvec.jmh.LaunchFlags;
import io.rlvec.jmh.vocab.VocabInputs;

/**
 * The PyTorch peer of {@code VocabBenchmark}: the same inputs ({@link VocabInputs}), the same work, on libtorch 2.7
 * through DJL, forward + backward through autograd with PyTorch's fused {@code log_softmax} and {@code softmax}.
 *
 * <ul>
 *   <li>{@link #forwardBackward}: {@code z = x / T}, {@code log_p = log_softmax(z)[label]},
 *       {@code H = -sum(softmax(z) * log_softmax(z))}, then the backward of {@code sum(w1 log_p) + sum(w2 H)} to
 *       the raw logits: the engine's {@code logProbs} + {@code logProbsBackward}.</li>
 *   <li>{@link #actorLoss}: the actor loss from the logits as the engine's {@code actorLoss} composes it (vanilla
 *       PPO clip 0.2 / 0.28, dual clip 3, token-mean, + 0.001 * low_var_kl, entropy as a metric), backward to the
 *       logits.</li>
 * </ul>
 * Each trial checks the peer's answer against the engine's before timing ({@link PeerCheck}).
 *
 * <p>{@code dtype=bf16}: the engine reads the logits as bfloat16; libtorch gets the same values as float32, because
 * DJL 0.36 cannot create a bfloat16 tensor on PyTorch: its JNI type table ({@code GetScalarTypeFromDType} in
 * {@code djl_pytorch_utils.h}) has no entry for it and ends in a bare {@code throw;}, which terminates the JVM
 * ({@code DataType.BFLOAT16} in {@code create} or {@code toType} exits with "terminate called without an active
 * exception"). So the bf16 rows compare the engine on bfloat16 with PyTorch on float32 (twice the bytes).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class TorchVocabBenchmark {
    @Param({"256x32000", "64x151936"})
    public String shape;
    @Param({"f32", "bf16"})
    public String dtype;
    /** libtorch intra-op threads. */
    @Param({"1", "2"})
    public int threads;
    @Param({"0.7"})
    public float temperature;

    private VocabInputs in;
    private NDManager trial;
    private NDArray logits;
    private NDArray labels;
    private NDArray w1;
    private NDArray w2;
    private NDArray old;
    private NDArray ref;
    private NDArray adv;
    private float tokens;

    @Setup(Level.Trial)
    public void setUp(final BenchmarkParams params) {
        LaunchFlags.verify();
        in = new VocabInputs(shape, dtype, temperature);
        trial = Torch.start(threads);
        final Shape rowsByVocab = new Shape(in.rows, in.vocab);
        final Shape rows = new Shape(in.rows);
        // bf16: the same bfloat16 values, held by libtorch as float32 (DJL 0.36 has no bfloat16 tensors; see the
        // class comment).
        logits = Torch.floats(trial, in.logits, rowsByVocab);
        final long[] lab = new long[in.rows];
        for (int r = 0; r < in.rows; r++) {
            lab[r] = in.labels.getInt(r);
        }
        labels = trial.create(lab, new Shape(in.rows, 1));
        w1 = Torch.floats(trial, in.gradLogProb, rows);
        w2 = Torch.floats(trial, in.gradEntropy, rows);
        old = Torch.floats(trial, in.actorBatch.column(Column.OLD_LOG_PROB), rows);
        ref = Torch.floats(trial, in.actorBatch.column(Column.REF_LOG_PROB), rows);
        adv = Torch.floats(trial, in.actorBatch.column(Column.ADVANTAGES), rows);
        tokens = in.rows;
        try (io.rlvec.Engine e = VocabInputs.engine("vector")) {
            if (params.getBenchmark().endsWith(".actorLoss")) {
                in.actorLoss(e, false);
                final float[] expected = in.grad.toFloatArray();
                final double expectedLoss = in.actorOut.loss();
                try (NDManager call = trial.newSubManager()) {
                    final NDArray[] out = actorLoss(call);
                    PeerCheck.gradient("PyTorch actor loss " + shape + " " + dtype, out[1], expected, in.rows,
                        in.vocab);
                    PeerCheck.loss("PyTorch actor loss " + shape + " " + dtype, out[0].toFloatArray()[0],
                        expectedLoss, PeerCheck.meanAbs(in.actorBatch.column(Column.ADVANTAGES), in.rows));
                }
            } else {
                in.backward(e);
                final float[] expected = in.grad.toFloatArray();
                try (NDManager call = trial.newSubManager()) {
                    PeerCheck.gradient("PyTorch vocabulary pass " + shape + " " + dtype, forwardBackward(call),
                        expected, in.rows, in.vocab);
                }
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        trial.close();
        in.close();
    }

    /** log_prob and entropy of the labels, then the backward of sum(w1 log_p) + sum(w2 H) to the raw logits. */
    @Benchmark
    public void forwardBackward() {
        try (NDManager call = trial.newSubManager()) {
            forwardBackward(call);
        }
    }

    /** The actor loss from the logits, forward and backward to the logits. */
    @Benchmark
    public void actorLoss() {
        try (NDManager call = trial.newSubManager()) {
            actorLoss(call);
        }
    }

    private NDArray forwardBackward(final NDManager call) {
        final NDArray x = Torch.leaf(logits, call);
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            final NDArray z = x.div(temperature);
            final NDArray logp = z.logSoftmax(1);
            final NDArray lp = logp.gather(Torch.view(labels, call), 1).squeeze(1);
            final NDArray h = z.softmax(1).mul(logp).sum(new int[] {1}).neg();
            final NDArray objective = lp.mul(Torch.view(w1, call)).sum().add(h.mul(Torch.view(w2, call)).sum());
            gc.backward(objective);
        }
        return x.getGradient();
    }

    private NDArray[] actorLoss(final NDManager call) {
        final NDArray x = Torch.leaf(logits, call);
        final NDArray loss;
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            final NDArray z = x.div(temperature);
            final NDArray logp = z.logSoftmax(1);
            final NDArray lp = logp.gather(Torch.view(labels, call), 1).squeeze(1);
            // Entropy as verl computes it with calculate_entropy on and entropy_coeff 0: a metric, no gradient.
            z.softmax(1).mul(logp).sum(new int[] {1}).neg().stopGradient().mean();
            final NDArray mask = Torch.view(w1, call).onesLike();
            loss = Torch.ppoClipTokenMean(lp, Torch.view(old, call), Torch.view(adv, call), mask, tokens, 0.2f, 0.28f,
                    3f)
                .add(Torch.lowVarKlTokenMean(lp, Torch.view(ref, call), mask, tokens).mul(0.001f));
            gc.backward(loss);
        }
        return new NDArray[] {loss, x.getGradient()};
    }
}
