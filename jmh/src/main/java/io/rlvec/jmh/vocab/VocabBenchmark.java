package io.rlvec.jmh.vocab;

import io.rlvec.jmh.LaunchFlags;
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

import io.rlvec.Engine;

/**
 * The vocabulary pass through {@link Engine}: forward ({@code logProbs} with entropy) and forward + backward
 * ({@code logProbs} then {@code logProbsBackward} into a separate gradient buffer), both implementations, f32 and
 * bf16, one and two threads, at (N, V) = (256, 32000) (a row fits in L2) and (64, 151936); and the composed actor
 * loss from the same logits in one call ({@code actorLoss}, {@code actorLossEntropy}). Divide the time per
 * operation by N * V for ns per logit; compare with {@link VocabFloorBenchmark}. The answer is checked against the
 * other implementation once per trial.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class VocabBenchmark {
    @Param({"vector", "vector2", "reference"})
    public String impl;
    @Param({"256x32000", "64x151936"})
    public String shape;
    @Param({"f32", "bf16"})
    public String dtype;
    /** verl's temperature: logits are divided by it (a power of two multiplies instead, with the same bits). */
    @Param({"0.7"})
    public double temperature;

    private VocabInputs in;
    private Engine engine;

    @Setup(Level.Trial)
    public void setUp(final BenchmarkParams params) {
        in = new VocabInputs(shape, dtype, temperature);
        engine = VocabInputs.engine(impl);
        in.check(engine, impl);
        if (params.getBenchmark().contains(".actorLoss")) {
            in.checkActor(engine, impl);
            in.warmTokenKernels(engine, 30_000);
        }
        // Statistics for the backward-only benchmark.
        in.forwardSaving(engine);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        if (engine instanceof AutoCloseable c) {
            c.close();
        }
        in.close();
    }

    /** logProbs with entropy: one exp per logit. */
    @Benchmark
    public void forward() {
        in.forward(engine);
    }

    /**
     * {@link #forward} that also writes the sum of squared probabilities (verl's old-log-prob forward with
     * {@code calculate_sum_pi_squared}): the same exps, one more product and sum per logit.
     */
    @Benchmark
    public void forwardSumPiSquared() {
        in.forwardSumPiSquared(engine);
    }

    /**
     * logProbs saving the row statistics, then logProbsBackward from them (a trainer's step): two exps per logit,
     * the least the pair can do without keeping probabilities.
     */
    @Benchmark
    public void forwardBackward() {
        in.forwardSaving(engine);
        in.backwardSaved(engine);
    }

    /**
     * The pair with the forward keeping its exps in the gradient buffer ({@code logProbs(..., stats, grad)}): one
     * exp per logit, and the backward (gradEntropy non-zero here) reads the logits and the kept exps.
     */
    @Benchmark
    public void forwardBackwardKept() {
        in.forwardKeeping(engine);
        in.backwardSaved(engine);
    }

    /** logProbsBackward alone from saved statistics: one exp per logit, logits read once, gradient written once. */
    @Benchmark
    public void backward() {
        in.backwardSaved(engine);
    }

    /**
     * The composed actor loss from logits in one call (vanilla PPO clip, token-mean, low_var_kl KL loss,
     * entropy_coeff 0): vocabulary forward, loss, metrics and d loss / d logits. The engine keeps the forward's
     * exps in the gradient buffer (as {@link #forwardBackwardKept}), so the pair evaluates one exp per logit and
     * the backward reads no logit.
     */
    @Benchmark
    public void actorLoss() {
        in.actorLoss(engine, false);
    }

    /** {@link #actorLoss} with entropy_coeff 0.01: the backward reads the logits again for the entropy's gradient. */
    @Benchmark
    public void actorLossEntropy() {
        in.actorLoss(engine, true);
    }

    /**
     * logProbs then logProbsBackward without saved statistics: the backward repeats the max and exp-sum passes
     * (it stores e_j in the gradient buffer and reads it back, so two exps per logit here too, plus a max pass).
     */
    @Benchmark
    public void forwardBackwardUnsaved() {
        in.forward(engine);
        in.backward(engine);
    }
}
