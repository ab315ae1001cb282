package io.rlvec.testing;

import java.util.SplittableRandom;

/**
 * Seeded generator over raw float bits for adversarial test data. Every test prints {@link #seed()} in its
 * assertion messages so that a failure can be replayed.
 */
public final class Gen {
    /** Special values every adversarial fill draws from. */
    private static final float[] SPECIALS = {
        Float.NaN, Float.intBitsToFloat(0x7f800001) /* signalling NaN */, Float.intBitsToFloat(0xffc00000),
        Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.MAX_VALUE, -Float.MAX_VALUE, Float.MIN_VALUE,
        -Float.MIN_VALUE, Float.MIN_NORMAL, -Float.MIN_NORMAL, 0f, -0f, 1f, -1f};

    private final long seed;
    private final SplittableRandom random;

    /** @param seed the seed, printed on failure. */
    public Gen(final long seed) {
        this.seed = seed;
        this.random = new SplittableRandom(seed);
    }

    /** @return the seed. */
    public long seed() {
        return seed;
    }

    /** @return uniform int in [0, bound). */
    public int nextInt(final int bound) {
        return random.nextInt(bound);
    }

    /** @return uniform int in [lo, hi] (inclusive). */
    public int between(final int lo, final int hi) {
        return random.nextInt(lo, hi + 1);
    }

    /** @return true with probability {@code p}. */
    public boolean chance(final double p) {
        return random.nextDouble() < p;
    }

    /** @return uniform double in [0, 1). */
    public double uniform() {
        return random.nextDouble();
    }

    /** @return a normal sample with the given standard deviation, rounded to float. */
    public float gaussian(final double sd) {
        // Box-Muller on the seeded stream (java.util.Random's nextGaussian is not on SplittableRandom).
        final double u = 1.0 - random.nextDouble();
        final double v = random.nextDouble();
        return (float) (sd * Math.sqrt(-2.0 * Math.log(u)) * Math.cos(2.0 * Math.PI * v));
    }

    /** @return a float with uniformly random bits (any class: NaN, Inf, subnormal, normal). */
    public float anyBits() {
        return Float.intBitsToFloat(random.nextInt());
    }

    /** @return one of the special values (NaN payloads, infinities, extremes, zeros, subnormal extremes). */
    public float special() {
        return SPECIALS[random.nextInt(SPECIALS.length)];
    }

    /** @return a random subnormal of random sign. */
    public float subnormal() {
        final int bits = random.nextInt(1, 0x800000);
        return Float.intBitsToFloat(random.nextBoolean() ? bits : bits | 0x80000000);
    }

    /** @return garbage for a masked slot: half special values, half random bits. */
    public float garbage() {
        return random.nextBoolean() ? special() : anyBits();
    }

    /** @return one of {@code values}. */
    public float pick(final float... values) {
        return values[random.nextInt(values.length)];
    }
}
