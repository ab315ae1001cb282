package io.rlvec.reference;

/**
 * PyTorch's elementwise semantics in scalar float, and the split of their gradients (design.md: clamp passes
 * the gradient on the closed interval, maximum/minimum split it equally at ties, where routes it).
 */
public final class TorchOps {
    private TorchOps() {
    }

    /** torch.maximum: the larger, NaN if either is NaN. */
    public static float maximum(final float a, final float b) {
        return (a > b || a != a) ? a : b;
    }

    /** torch.minimum (and the binary torch.min): the smaller, NaN if either is NaN. */
    public static float minimum(final float a, final float b) {
        return (a < b || a != a) ? a : b;
    }

    /**
     * torch.clamp(x, lo, hi), ATen's {@code min(max(x, lo), hi)}: NaN stays NaN, -0 stays -0, and when lo &gt; hi
     * every value becomes hi (as torch documents), the order of the engines' compare-and-blend clamps.
     */
    public static float clamp(final float x, final float lo, final float hi) {
        final float atLeast = x < lo ? lo : x;
        return atLeast > hi ? hi : atLeast;
    }

    /** Gradient share of {@code a} in maximum(a, b): 1 if a &gt; b, 0.5 at a tie, else 0. */
    public static float maxShare(final float a, final float b) {
        return a > b ? 1f : (a == b ? 0.5f : 0f);
    }

    /** Gradient share of {@code a} in minimum(a, b): 1 if a &lt; b, 0.5 at a tie, else 0. */
    public static float minShare(final float a, final float b) {
        return a < b ? 1f : (a == b ? 0.5f : 0f);
    }

    /** Whether clamp(x, lo, hi) passes the gradient of x (closed interval). */
    public static boolean clampPasses(final float x, final float lo, final float hi) {
        return x >= lo && x <= hi;
    }
}
