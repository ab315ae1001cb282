package io.rlvec.engine;

import java.nio.ByteOrder;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The vector species of the engine, resolved once (style.md P3): float, int and double species of one bit
 * size, {@code static final} so that C2 folds them. {@code -Drlvec.vectorBits=128|256|512} overrides the
 * preferred size (tests only: the suite also runs at 128 bits).
 */
public final class Vec {
    /** System property overriding the vector size in bits. */
    public static final String BITS_PROPERTY = "rlvec.vectorBits";

    /** Vector size in bits. */
    public static final int BITS = resolveBits();
    /** Shape of every vector the engine uses. */
    public static final VectorShape SHAPE = VectorShape.forBitSize(BITS);
    /** float species. */
    public static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED.withShape(SHAPE);
    /** int species (same lane count as {@link #F}). */
    public static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED.withShape(SHAPE);
    /** double species (half the lanes of {@link #F}). */
    public static final VectorSpecies<Double> D = DoubleVector.SPECIES_PREFERRED.withShape(SHAPE);
    /** float lanes. */
    public static final int FL = F.length();
    /** Byte order of every off-heap access. */
    public static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private Vec() {
    }

    private static int resolveBits() {
        final int preferred = FloatVector.SPECIES_PREFERRED.vectorBitSize();
        final String forced = System.getProperty(BITS_PROPERTY);
        if (forced == null || forced.isBlank()) {
            return preferred;
        }
        final int bits = Integer.parseInt(forced.trim());
        if (bits != 128 && bits != 256 && bits != 512) {
            throw new IllegalArgumentException("-D" + BITS_PROPERTY + " must be 128, 256 or 512, got " + forced);
        }
        if (bits > preferred) {
            throw new IllegalArgumentException("-D" + BITS_PROPERTY + "=" + bits + " exceeds this CPU's preferred "
                + preferred + " bits");
        }
        return bits;
    }
}
