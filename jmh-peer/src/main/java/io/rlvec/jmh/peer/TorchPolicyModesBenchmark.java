package io.rlvec.jmh.peer;

import java.util.Arrays;
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
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.training.GradientCollector;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.jmh.Inputs;
import io.rlvec.jmh.LaunchFlags;
import io.rlvec.jmh.PolicyLossBenchmark;
import io.rlvec.reference.Selection;

/**
 * The PyTorch peer of {@code PolicyLossBenchmark} for every policy-loss mode it measures: the same padded batches
 * ({@link Inputs#policyBatch}), the same spec ({@link PolicyLossBenchmark#spec}: verl's defaults for the mode's own
 * keys, dro_beta 0.1, clip_cov_ratio and kl_cov_ratio 0.01), verl's formulas re-expressed with libtorch ops through
 * DJL, forward + backward through autograd to log_prob.
 *
 * <p>Per mode ({@code nakl = log_prob - old_log_prob}, {@code r = exp(clamp(nakl, -20, 20))}, {@code sg} =
 * detach; aggregation token-mean over the mask unless said otherwise):
 * <ul>
 *   <li>vanilla: PPO clip 0.2 / 0.2, dual clip 3.</li>
 *   <li>gspo: {@code s = exp(min(lp - sg(lp) + sg(seq mean of nakl), 10))},
 *       {@code max(-A s, -A clamp(s, 0.8, 1.2))}, seq-mean-token-mean (verl hard-codes it).</li>
 *   <li>sapo: {@code -sigmoid(tau (r - 1)) * 4 / tau * A}, tau = tau_pos where A &gt; 0 else tau_neg,
 *       seq-mean-token-mean (hard-coded as in verl).</li>
 *   <li>gpg: {@code -lp A}. cispo: {@code -sg(clamp(r, 0.8, 1.2)) A lp}. dro: {@code -(lp A - 0.05 nakl^2)}.</li>
 *   <li>dppo_tv / dppo_kl: {@code -A sg(min(r, clip_ratio_c)) lp sg(valid)}, valid from {@code p - q} or the binary
 *       KL {@code q (old - lp) + (1 - q) log((1 - q + 1e-8) / (1 - p + 1e-8))} against 0.2.</li>
 *   <li>geo_mean: per sequence {@code -mean(A) exp(sum(sgn(A) min(sgn(A) nakl, sgn(A) clamp(nakl, -0.2, 0.2)))
 *       / len)}, a plain mean over the rows.</li>
 *   <li>kl_cov: {@code -A exp(nakl)}, plus {@code ppo_kl_coef |nakl|} (0.1) at the top 1% of
 *       {@code (A - mean A)(lp - mean lp)} over the valid tokens ({@code nonzero}, {@code topk}, {@code scatter} as
 *       verl's index assignment).</li>
 *   <li>clip_cov: {@code max(-A exp(nakl), -A clamp(exp(nakl), 0.8, 1.2))} zeroed at 1% of the valid tokens drawn
 *       among the candidates ({@code 1 < cov < 5}, not held by the clip). verl draws them with an unseeded
 *       {@code randperm}; the peer pays for the same draw but takes the engine's (seeded) one, so that the answers can
 *       be compared: candidates by {@code nonzero}, the engine's picks among them by index, zeros by
 *       {@code scatter}.</li>
 * </ul>
 * Masked slots get old_log_prob (NaN in some of the engine's inputs, which it never reads; PyTorch's
 * {@code x * mask} would propagate it). Before timing, each trial checks PyTorch's loss and gradient against the
 * engine's ({@link PeerCheck}: gradients elementwise within {@code 1e-3 |g| + 1e-5 max_row |g|}, the loss within
 * 1e-5 of the larger of it and the mean size of its terms), and for kl_cov and clip_cov that PyTorch selects the
 * same tokens as the engine; a mode that fails throws, so it is not measured.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS, LaunchFlags.NATIVE_ACCESS,
    LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})
public class TorchPolicyModesBenchmark {
    /** verl's policy_loss.loss_mode (the same names as {@code PolicyLossBenchmark}'s {@code mode}). */
    @Param({"vanilla", "gspo", "sapo", "gpg", "cispo", "dppo_tv", "dppo_kl", "dro", "geo_mean", "clip_cov", "kl_cov"})
    public String mode;
    /** {@code padded-BxT} (see {@link io.rlvec.jmh.Shape}). */
    @Param({"padded-64x4096", "padded-8x512"})
    public String shape;
    /** libtorch intra-op threads. */
    @Param({"1", "2"})
    public int threads;

    /** The aggregation {@code PolicyLossBenchmark} measures (gspo and sapo override it, as in verl). */
    private static final String AGG = "token-mean";

    private LossSpec spec;
    private NDManager trial;
    private NDArray logProb;
    private NDArray old;
    private NDArray adv;
    private NDArray mask;
    private NDArray tokenCount;
    private float tokens;
    private int rows;
    private int width;
    /** clip_cov: the engine's picks, as ordinals among the candidates in token order. */
    private NDArray picks;
    private long candidates;

    @Setup(Level.Trial)
    public void setUp() {
        LaunchFlags.verify();
        final io.rlvec.jmh.Shape s = io.rlvec.jmh.Shape.parse(shape);
        if (s.packed()) {
            throw new IllegalArgumentException("the PyTorch peer takes padded shapes only, got " + shape);
        }
        spec = PolicyLossBenchmark.spec(AGG, mode);
        rows = s.batch();
        width = s.width();
        trial = Torch.start(threads);
        try (TokenBatch batch = Inputs.policyBatch(s, Inputs.SEED);
             VectorEngine engine = new VectorEngine(1);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
             OffHeapArray clean = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final int n = batch.numTokens();
            final Shape bt = new Shape(rows, width);
            final OffHeapArray m = batch.mask();
            final OffHeapArray lp = batch.column(Column.LOG_PROB);
            final OffHeapArray o = batch.column(Column.OLD_LOG_PROB);
            int valid = 0;
            for (int i = 0; i < n; i++) {
                final boolean on = m.getFloat(i) != 0f;
                clean.setFloat(i, on ? lp.getFloat(i) : o.getFloat(i));
                valid += on ? 1 : 0;
            }
            tokens = valid;
            logProb = Torch.floats(trial, clean, bt);
            old = Torch.floats(trial, o, bt);
            adv = Torch.floats(trial, batch.column(Column.ADVANTAGES), bt);
            mask = Torch.floats(trial, m, bt);
            tokenCount = mask.sum(new int[] {1});

            final boolean[] selected = new boolean[n];
            if ("clip_cov".equals(mode) || "kl_cov".equals(mode)) {
                Selection.select(spec, batch, selected);
            }
            if ("clip_cov".equals(mode)) {
                preparePicks(selected);
            }

            final PolicyLossResult pr = new PolicyLossResult();
            engine.policyLoss(spec, batch, grad, pr);
            final String what = "PyTorch " + mode + " policy loss " + shape;
            try (NDManager call = trial.newSubManager()) {
                final Out out = step(call);
                if (out.selected != null) {
                    checkSelection(what, out.selected, selected);
                }
                PeerCheck.gradient(what, out.grad, grad.toFloatArray(), rows, width);
                PeerCheck.loss(what, out.loss.toFloatArray()[0], pr.pgLoss(), out.termScale());
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        trial.close();
    }

    /** The mode's loss, forward and backward to log_prob. */
    @Benchmark
    public void policyLoss() {
        try (NDManager call = trial.newSubManager()) {
            step(call);
        }
    }

    /** What one call gives: the loss, d loss / d log_prob, the terms it sums and, for the *_cov modes, its picks. */
    private record Out(NDArray loss, NDArray grad, NDArray terms, NDArray termMask, NDArray selected) {
        /** @return the mean magnitude of the summed terms. */
        double termScale() {
            final NDArray m = termMask;
            return terms.stopGradient().abs().mul(m).sum().toFloatArray()[0] / Math.max(1f, m.sum().toFloatArray()[0]);
        }
    }

    private Out step(final NDManager call) {
        final NDArray lp = Torch.leaf(logProb, call);
        final NDArray o = Torch.view(old, call);
        final NDArray a = Torch.view(adv, call);
        final NDArray m = Torch.view(mask, call);
        final NDArray[] terms = new NDArray[3];
        final NDArray loss;
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            loss = forward(call, lp, o, a, m, terms);
            gc.backward(loss);
        }
        return new Out(loss, lp.getGradient(), terms[0], terms[1], terms[2]);
    }

    /**
     * @param terms receives the summed terms, their mask and (clip_cov, kl_cov) the flat positions picked.
     * @return the aggregated loss.
     */
    private NDArray forward(final NDManager call, final NDArray lp, final NDArray o, final NDArray a, final NDArray m,
                            final NDArray[] terms) {
        final float low = (float) spec.clipRatioLow();
        final float high = (float) spec.clipRatioHigh();
        final NDArray nakl = lp.sub(o);
        terms[1] = m;
        final NDArray pg;
        switch (mode) {
            case "vanilla" -> {
                final NDArray ratio = nakl.clip(-20f, 20f).exp();
                final NDArray pg1 = ratio.mul(a).neg();
                final NDArray pg2 = ratio.clip(1f - low, 1f + high).mul(a).neg();
                final NDArray c1 = pg1.maximum(pg2);
                final NDArray c2 = a.mul(-(float) spec.clipRatioC()).minimum(c1);
                pg = NDArrays.where(a.lt(0f), c2, c1);
            }
            case "gspo" -> {
                final NDArray lengths = m.sum(new int[] {1}).maximum(1f);
                final NDArray seq = nakl.mul(m).sum(new int[] {1}).div(lengths);
                final NDArray logS = lp.sub(lp.stopGradient()).add(seq.stopGradient().expandDims(1)).minimum(10f);
                final NDArray ratio = logS.exp();
                pg = ratio.mul(a).neg().maximum(ratio.clip(1f - low, 1f + high).mul(a).neg());
                terms[0] = pg;
                return seqMeanTokenMean(pg, m);
            }
            case "sapo" -> {
                final NDArray ratio = nakl.clip(-20f, 20f).exp();
                final NDArray tau = NDArrays.where(a.gt(0f), a.onesLike().mul((float) spec.tauPos()),
                    a.onesLike().mul((float) spec.tauNeg()));
                final NDArray gate = Activation.sigmoid(ratio.sub(1f).mul(tau)).mul(tau.onesLike().mul(4f).div(tau));
                pg = gate.mul(a).neg();
                terms[0] = pg;
                return seqMeanTokenMean(pg, m);
            }
            case "gpg" -> pg = lp.mul(a).neg();
            case "cispo" -> {
                final NDArray clipped = nakl.clip(-20f, 20f).exp().clip(1f - low, 1f + high).stopGradient();
                pg = clipped.neg().mul(a).mul(lp);
            }
            case "dro" -> pg = lp.mul(a).sub(nakl.square().mul((float) (0.5 * spec.droBeta()))).neg();
            case "dppo_tv", "dppo_kl" -> {
                final NDArray ratio = nakl.clip(-20f, 20f).exp();
                final NDArray truncated = ratio.minimum((float) spec.clipRatioC()).stopGradient();
                final NDArray p = lp.exp();
                final NDArray q = o.exp();
                final NDArray pos;
                final NDArray neg;
                if ("dppo_tv".equals(mode)) {
                    pos = p.sub(q).lte(high);
                    neg = p.sub(q).gte(-low);
                } else {
                    final NDArray kl = q.mul(o.sub(lp)).add(q.neg().add(1f).mul(
                        q.neg().add(1f + 1e-8f).div(p.neg().add(1f + 1e-8f)).log()));
                    pos = kl.lte(high).logicalOr(p.lte(q));
                    neg = kl.lte(low).logicalOr(p.gte(q));
                }
                final NDArray validMask = NDArrays.where(a.gt(0f), pos, neg).stopGradient().toType(DataType.FLOAT32,
                    false);
                pg = a.neg().mul(truncated).mul(lp).mul(validMask);
            }
            case "geo_mean" -> {
                final NDArray sgn = a.sign();
                final NDArray clamped = nakl.clip(-low, high);
                final NDArray k = sgn.mul(sgn.mul(nakl).minimum(sgn.mul(clamped)));
                final NDArray len = m.sum(new int[] {1}).add(1e-8f);
                final NDArray ratio = k.mul(m).sum(new int[] {1}).div(len).exp();
                final NDArray seqAdv = a.mul(m).sum(new int[] {1}).div(len);
                final NDArray perSeq = seqAdv.neg().mul(ratio);
                terms[0] = perSeq;
                terms[1] = perSeq.onesLike();
                return perSeq.mean();
            }
            case "kl_cov" -> {
                final NDArray ratio = nakl.exp();
                final NDArray pg1 = a.neg().mul(ratio);
                final NDArray flatMask = m.reshape(-1).gt(0f);
                final NDArray validIdx = flatMask.nonzero().squeeze(1);
                final NDArray av = a.reshape(-1).booleanMask(flatMask);
                final NDArray lv = lp.stopGradient().reshape(-1).booleanMask(flatMask);
                final NDArray cov = av.sub(av.mean()).mul(lv.sub(lv.mean()));
                final int k = Math.max(1, (int) (cov.getShape().get(0) * spec.klCovRatio()));
                final NDArray top = cov.topK(Math.min(k, (int) cov.getShape().get(0)), 0, true, true).get(1);
                final NDArray picked = validIdx.take(call, top);
                final NDArray sel = m.reshape(-1).zerosLike().scatter(picked, picked.onesLike()
                    .toType(DataType.FLOAT32, false), 0).reshape(rows, width);
                pg = pg1.add(sel.mul(nakl.abs().mul((float) spec.ppoKlCoef())));
                terms[2] = picked;
            }
            case "clip_cov" -> {
                final NDArray ratio = nakl.exp();
                final NDArray pg1 = a.neg().mul(ratio);
                final NDArray pg2 = a.neg().mul(ratio.clip(1f - low, 1f + high));
                final NDArray on = m.gt(0f);
                final NDArray tokensOn = m.sum().add(1e-8f);
                final NDArray meanA = a.mul(m).sum().div(tokensOn);
                final NDArray meanLp = lp.stopGradient().mul(m).sum().div(tokensOn);
                final NDArray cov = a.sub(meanA).mul(lp.stopGradient().sub(meanLp));
                final NDArray free = pg2.gt(pg1).logicalNot().logicalAnd(on);
                final NDArray cand = cov.lt((float) spec.clipCovUb()).logicalAnd(cov.gt((float) spec.clipCovLb()))
                    .logicalAnd(free).reshape(-1).nonzero().squeeze(1);
                final long found = cand.getShape().get(0);
                // verl's draw (randperm over the candidates); its outcome is replaced by the engine's.
                call.randomPermutation(found);
                if (found != candidates) {
                    throw new IllegalStateException("PyTorch clip_cov " + shape + ": " + found
                        + " candidate tokens, the engine's " + candidates);
                }
                final NDArray picked = cand.take(call, Torch.view(picks, call));
                final NDArray corr = m.reshape(-1).onesLike().scatter(picked, picked.zerosLike()
                    .toType(DataType.FLOAT32, false), 0).reshape(rows, width);
                pg = pg1.maximum(pg2).mul(corr);
                terms[2] = picked;
            }
            default -> throw new IllegalArgumentException("mode '" + mode + "' has no PyTorch peer");
        }
        terms[0] = pg;
        return pg.mul(m).sum().div(tokens);
    }

    /** verl's seq-mean-token-mean: the mean over sequences with a valid token of each one's token-mean. */
    private NDArray seqMeanTokenMean(final NDArray pg, final NDArray m) {
        final NDArray count = m.sum(new int[] {1});
        final NDArray seqLoss = pg.mul(m).sum(new int[] {1}).div(count.add(1e-8f));
        final NDArray seqMask = count.gt(0f).toType(DataType.FLOAT32, false);
        return seqLoss.mul(seqMask).sum().div(seqMask.sum());
    }

    /**
     * clip_cov: the engine's picks as ordinals among the candidates in token order (the candidates the engine
     * would see: PyTorch's are checked against their count on every call).
     */
    private void preparePicks(final boolean[] selected) {
        try (NDManager call = trial.newSubManager()) {
            final NDArray lp = Torch.view(logProb, call);
            final NDArray a = Torch.view(adv, call);
            final NDArray m = Torch.view(mask, call);
            final float low = (float) spec.clipRatioLow();
            final float high = (float) spec.clipRatioHigh();
            final NDArray ratio = lp.sub(Torch.view(old, call)).exp();
            final NDArray pg1 = a.neg().mul(ratio);
            final NDArray pg2 = a.neg().mul(ratio.clip(1f - low, 1f + high));
            final NDArray tokensOn = m.sum().add(1e-8f);
            final NDArray cov = a.sub(a.mul(m).sum().div(tokensOn)).mul(lp.sub(lp.mul(m).sum().div(tokensOn)));
            final long[] cand = cov.lt((float) spec.clipCovUb()).logicalAnd(cov.gt((float) spec.clipCovLb()))
                .logicalAnd(pg2.gt(pg1).logicalNot()).logicalAnd(m.gt(0f)).reshape(-1).nonzero().squeeze(1)
                .toLongArray();
            candidates = cand.length;
            final long[] ordinals = new long[selected.length];
            int k = 0;
            for (int t = 0; t < selected.length; t++) {
                if (selected[t]) {
                    final int at = Arrays.binarySearch(cand, t);
                    if (at < 0) {
                        throw new IllegalStateException("PyTorch clip_cov " + shape + ": the engine picks token " + t
                            + ", which is not among PyTorch's candidates");
                    }
                    ordinals[k++] = at;
                }
            }
            picks = trial.create(Arrays.copyOf(ordinals, k));
        }
    }

    /** Fails unless PyTorch's picks are exactly the engine's selected tokens. */
    private static void checkSelection(final String what, final NDArray picked, final boolean[] selected) {
        final long[] got = picked.toLongArray();
        final boolean[] mine = new boolean[selected.length];
        for (final long t : got) {
            mine[(int) t] = true;
        }
        for (int t = 0; t < selected.length; t++) {
            if (mine[t] != selected[t]) {
                throw new IllegalStateException(what + ": token " + t + " is " + (mine[t] ? "" : "not ")
                    + "selected by PyTorch but " + (selected[t] ? "" : "not ") + "by the engine (" + got.length
                    + " picks)");
            }
        }
    }
}
