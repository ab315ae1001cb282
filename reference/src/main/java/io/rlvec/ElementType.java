package io.rlvec;

/** Element types of {@link OffHeapArray}. */
public enum ElementType {
    /** IEEE-754 binary32, little endian. */
    F32(4),
    /** bfloat16 stored as the upper 16 bits of a binary32, little endian; widened to float on read. */
    BF16(2),
    /** Two's-complement 32-bit integer, little endian. */
    I32(4),
    /** 64-bit signed integers (verl's int64 group ids, {@code index} / {@code uid}). */
    I64(8);

    private final int bytes;

    ElementType(final int bytes) {
        this.bytes = bytes;
    }

    /** @return size of one element in bytes. */
    public int bytes() {
        return bytes;
    }
}
