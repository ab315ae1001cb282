package io.rlvec.jmh.peer;

import java.nio.FloatBuffer;
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

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

import io.rlvec.AdvantageInputs;
import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.jmh.AdvantageBenchmark;
import io.rlvec.jmh.LaunchFlags;

/**
 * The PyTorch peer of {@code AdvantageBenchmark}: the same configurations and inputs
 * ({@link AdvantageBenchmark#fixture}), verl's formulations re-expressed with libtorch ops through DJL.
 *
 * <ul>
 *   <li>gae: verl's loop over T reversed on column slices ({@code delta = r_t + gamma next - v_t},
 *       {@code last' = delta + gamma lam last}, {@code next} and {@code last} kept where the mask is 0), the columns
 *       stacked, {@code returns = adv + values}, then masked_whiten
 *       ({@code (x - mean) / sqrt(var_unbiased + 1e-8)}, masked mean and variance): 3 slices and 11 ops per step,
 *       each a libtorch call.</li>
 *   <li>grpo: verl's vectorized variant: scores = row sums of the rewards, per-group mean and unbiased std,
 *       {@code (s - mean_g) / (std_g + 1e-6)} broadcast over the mask (a group of one: mean 0, std 1).</li>
 *   <li>rloo: verl's vectorized variant: {@code (n s - sum_g) / max(n - 1, 1)}, 0 for a group of one.</li>
 * </ul>
 * DJL has no {@code index_add_} (verl's group sums) and no {@code bincount} (its group counts): the peer takes the
 * counts and each row's group from {@code unique(return_inverse, return_counts)} and the group sums from a
 * segmented sum (rows ordered by group with {@code argsort}, a float64 {@code cumsum}, differences at the group
 * ends). The estimators' answers equal the loop estimators' the engine benchmark measures (grpo, rloo: no group of
 * one in these inputs). Before timing, each trial checks the advantages (and GAE's returns) against the engine's
 * elementwise within {@code 1e-3 |x| + 1e-5 max_row |x|} ({@link PeerCheck}).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class TorchAdvantageBenchmark {
    /** estimator@shape, as {@code AdvantageBenchmark}'s {@code config}. */
    @Param({"gae@64x4096", "gae@4096x1024", "grpo@4096x1024", "rloo@4096x1024"})
    public String config;
    /** libtorch intra-op threads. */
    @Param({"1", "2"})
    public int threads;

    private static final float EPS = 1e-6f;

    private String estimator;
    private float gamma;
    private float gammaLam;
    private int rows;
    private int width;
    private NDManager trial;
    private NDArray rewards;
    private NDArray values;
    private NDArray mask;
    private NDArray ids;

    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        final AdvantageBenchmark.Fixture f = AdvantageBenchmark.fixture(config);
        estimator = config.substring(0, config.indexOf('@'));
        gamma = (float) f.spec().gamma();
        gammaLam = (float) (f.spec().gamma() * f.spec().lam());
        rows = f.rows();
        width = f.width();
        trial = Torch.start(threads);
        final Shape bt = new Shape(rows, width);
        rewards = trial.create(FloatBuffer.wrap(f.rewards()), bt);
        values = trial.create(FloatBuffer.wrap(f.values()), bt);
        final float[] m = new float[f.mask().length];
        for (int i = 0; i < m.length; i++) {
            m[i] = f.mask()[i] ? 1f : 0f;
        }
        mask = trial.create(FloatBuffer.wrap(m), bt);
        ids = trial.create(f.ids());
        try (TokenBatch batch = f.tokenBatch();
             OffHeapArray index = OffHeapArray.ofLongs(f.ids());
             OffHeapArray adv = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
             OffHeapArray ret = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
             VectorEngine engine = new VectorEngine(1);
             NDManager call = trial.newSubManager()) {
            engine.advantages(f.spec(), batch, new AdvantageInputs().index(index), adv, ret);
            final NDArray[] out = step(call);
            final String what = "PyTorch " + config + " advantages";
            PeerCheck.values(what, "advantage", out[0], adv.toFloatArray(), rows, width);
            PeerCheck.values(what, "return", out[1], ret.toFloatArray(), rows, width);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        trial.close();
    }

    /** The estimator's advantages and returns. */
    @Benchmark
    public void advantages() {
        try (NDManager call = trial.newSubManager()) {
            step(call);
        }
    }

    private NDArray[] step(final NDManager call) {
        final NDArray r = Torch.view(rewards, call);
        final NDArray v = Torch.view(values, call);
        final NDArray m = Torch.view(mask, call);
        return switch (estimator) {
            case "gae" -> gae(call, r, v, m);
            case "grpo" -> grpo(call, r, m);
            case "rloo" -> rloo(call, r, m);
            default -> throw new IllegalArgumentException("estimator '" + estimator + "' has no PyTorch peer");
        };
    }

    /** verl's GAE: the backward loop over column slices, then masked_whiten of the advantages. */
    private NDArray[] gae(final NDManager call, final NDArray r, final NDArray v, final NDArray m) {
        NDArray next = call.zeros(new Shape(rows));
        NDArray last = call.zeros(new Shape(rows));
        final NDArray[] columns = new NDArray[width];
        for (int t = width - 1; t >= 0; t--) {
            final NDIndex col = new NDIndex().addAllDim().addIndices(t);
            final NDArray rt = r.get(col);
            final NDArray vt = v.get(col);
            final NDArray mt = m.get(col);
            final NDArray delta = rt.add(next.mul(gamma)).sub(vt);
            final NDArray lastNew = delta.add(last.mul(gammaLam));
            final NDArray keep = mt.neg().add(1f);
            next = vt.mul(mt).add(keep.mul(next));
            last = lastNew.mul(mt).add(keep.mul(last));
            columns[t] = last;
        }
        final NDArray adv = NDArrays.stack(new NDList(columns), 1);
        final NDArray returns = adv.add(v);
        return new NDArray[] {maskedWhiten(adv, m), returns};
    }

    /** verl's masked_whiten: (x - mean) * rsqrt(var + 1e-8), the unbiased variance over the mask. */
    private static NDArray maskedWhiten(final NDArray x, final NDArray m) {
        final NDArray count = m.sum();
        final NDArray mean = x.mul(m).sum().div(count.add(1e-8f));
        final NDArray centered = x.sub(mean);
        final NDArray var = centered.square().mul(m).sum().div(count.add(1e-8f)).mul(count.div(count.sub(1f)));
        // DJL has no rsqrt: 1 / sqrt.
        return centered.div(var.add(1e-8f).sqrt());
    }

    /** verl's vectorized GRPO. */
    private NDArray[] grpo(final NDManager call, final NDArray r, final NDArray m) {
        final NDArray scores = r.sum(new int[] {1});
        final Groups g = groups(call);
        final NDArray mean = g.sum(scores).div(g.count.maximum(1f));
        final NDArray centered = scores.sub(mean.take(call, g.inverse));
        final NDArray var = g.sum(centered.square()).div(g.count.sub(1f).maximum(1f));
        final NDArray single = g.count.lte(1f);
        final NDArray meanG = NDArrays.where(single, mean.zerosLike(), mean);
        final NDArray stdG = NDArrays.where(single, var.onesLike(), var.maximum(0f).sqrt());
        final NDArray scalars = scores.sub(meanG.take(call, g.inverse)).div(stdG.take(call, g.inverse).add(EPS));
        final NDArray adv = scalars.expandDims(1).mul(m);
        return new NDArray[] {adv, adv};
    }

    /** verl's vectorized RLOO. */
    private NDArray[] rloo(final NDManager call, final NDArray r, final NDArray m) {
        final NDArray scores = r.sum(new int[] {1});
        final Groups g = groups(call);
        final NDArray c = g.count.take(call, g.inverse);
        final NDArray sums = g.sum(scores).take(call, g.inverse);
        final NDArray adv = c.mul(scores).sub(sums).div(c.sub(1f).maximum(1f))
            .mul(c.gt(1f).toType(DataType.FLOAT32, false));
        final NDArray out = adv.expandDims(1).mul(m);
        return new NDArray[] {out, out};
    }

    /**
     * The rows' groups: {@code unique(ids, return_inverse, return_counts)} (for verl's bincount), and a segmented
     * sum over them (for its index_add_).
     */
    private Groups groups(final NDManager call) {
        final NDList u = Torch.view(ids, call).unique(true, true, true);
        final NDArray inverse = u.get(1);
        final NDArray counts = u.get(2);
        final NDArray order = inverse.argSort(0, true);
        final NDArray ends = counts.cumSum(0);
        return new Groups(call, inverse, counts.toType(DataType.FLOAT32, false), order, ends, ends.sub(counts));
    }

    /** Groups of rows and a segmented sum over them. */
    private record Groups(NDManager call, NDArray inverse, NDArray count, NDArray order, NDArray ends,
                          NDArray starts) {
        /** @return per group, the sum of {@code x} over its rows (in float64, rounded to float32). */
        NDArray sum(final NDArray x) {
            final NDArray sorted = x.take(call, order).toType(DataType.FLOAT64, false);
            final NDArray cs = call.zeros(new Shape(1), DataType.FLOAT64).concat(sorted.cumSum(0));
            return cs.take(call, ends).sub(cs.take(call, starts)).toType(DataType.FLOAT32, false);
        }
    }
}
