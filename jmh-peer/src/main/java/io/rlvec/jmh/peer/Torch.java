package io.rlvec.jmh.peer;

import java.nio.FloatBuffer;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

import io.rlvec.OffHeapArray;

/**
 * The PyTorch peer's plumbing: libtorch 2.7 through DJL, offline, with a fixed number of intra-op threads, and
 * the rules a fair measurement needs.
 *
 * <ul>
 *   <li>Every call works under its own {@link NDManager} (a sub-manager of the trial's), closed at the end of the
 *       call: DJL ties each temporary to the manager of its left operand, so without it every call would leak its
 *       temporaries into the trial's manager.</li>
 *   <li>The differentiated input is a fresh leaf per call ({@link #leaf}: a detached view of the trial's tensor,
 *       no copy): DJL never zeroes gradients, so a reused leaf would accumulate them.</li>
 *   <li>Inputs enter a call through {@link #view} for the same reason: an operation whose left operand belongs to
 *       the trial's manager would attach its result there.</li>
 * </ul>
 */
final class Torch {
    private Torch() {
    }

    /**
     * Starts libtorch with {@code threads} intra-op threads and no network access. Must run before anything else
     * touches DJL in this JVM (each JMH fork runs one parameter set, so each fork sets its own count).
     *
     * @return the trial's manager.
     */
    static NDManager start(final int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        System.setProperty("ai.djl.offline", "true");
        System.setProperty("OPT_OUT_TRACKING", "true");
        System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads));
        System.setProperty("ai.djl.pytorch.num_interop_threads", "1");
        Engine.getEngine("PyTorch");
        return NDManager.newBaseManager();
    }

    /** @return a float32 tensor of {@code shape} holding the first {@code shape.size()} values of {@code a}. */
    static NDArray floats(final NDManager m, final OffHeapArray a, final Shape shape) {
        final int n = Math.toIntExact(shape.size());
        final float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = a.getFloat(i);
        }
        return m.create(FloatBuffer.wrap(v), shape);
    }

    /** @return {@code a} detached (same storage, no copy) and attached to {@code call}, as a fresh leaf. */
    static NDArray leaf(final NDArray a, final NDManager call) {
        final NDArray x = view(a, call);
        x.setRequiresGradient(true);
        return x;
    }

    /** @return {@code a} detached (same storage, no copy) and attached to {@code call}. */
    static NDArray view(final NDArray a, final NDManager call) {
        final NDArray x = a.stopGradient();
        x.attach(call);
        return x;
    }

    /**
     * verl's vanilla PPO clip (clip_ratio_low / high, dual clip {@code c}) + token-mean over {@code mask}:
     * {@code pg1 = -A r}, {@code pg2 = -A clamp(r, 1 - low, 1 + high)}, {@code c1 = max}, {@code c2 = min(-A c, c1)},
     * {@code where(A < 0, c2, c1)}, with {@code r = exp(clamp(lp - old, -20, 20))}.
     */
    static NDArray ppoClipTokenMean(final NDArray lp, final NDArray old, final NDArray adv, final NDArray mask,
                                    final float tokens, final float low, final float high, final float c) {
        final NDArray ratio = lp.sub(old).clip(-20f, 20f).exp();
        final NDArray pg1 = ratio.mul(adv).neg();
        final NDArray pg2 = ratio.clip(1f - low, 1f + high).mul(adv).neg();
        final NDArray c1 = pg1.maximum(pg2);
        final NDArray c2 = adv.mul(-c).minimum(c1);
        final NDArray perToken = ai.djl.ndarray.NDArrays.where(adv.lt(0f), c2, c1);
        return perToken.mul(mask).sum().div(tokens);
    }

    /** verl's low_var_kl (k3) per token, token-mean over {@code mask}. */
    static NDArray lowVarKlTokenMean(final NDArray lp, final NDArray ref, final NDArray mask, final float tokens) {
        final NDArray kl = ref.sub(lp).clip(-20f, 20f);
        final NDArray kld = kl.exp().sub(kl).sub(1f).clip(-10f, 10f);
        return kld.mul(mask).sum().div(tokens);
    }
}
