package io.rlvec.cli.io;

/** The safetensors element types this reader understands, with their on-disk names and sizes. */
public enum Dtype {
    /** IEEE-754 binary32. */
    F32("F32", 4),
    /** IEEE-754 binary64 (converted to float32, rounded to nearest). */
    F64("F64", 8),
    /** IEEE-754 binary16 (converted to float32 exactly). */
    F16("F16", 2),
    /** bfloat16 (the upper 16 bits of a binary32). */
    BF16("BF16", 2),
    /** 32-bit two's-complement integer. */
    I32("I32", 4),
    /** 64-bit two's-complement integer (converted to int32 with a range check). */
    I64("I64", 8),
    /** unsigned byte (masks: 0/1). */
    U8("U8", 1),
    /** boolean stored as one byte (0 or 1). */
    BOOL("BOOL", 1);

    private final String fileName;
    private final int bytes;

    Dtype(final String fileName, final int bytes) {
        this.fileName = fileName;
        this.bytes = bytes;
    }

    /** @return the dtype's name in a safetensors header. */
    public String fileName() {
        return fileName;
    }

    /** @return size of one element in bytes. */
    public int bytes() {
        return bytes;
    }

    /** @return whether the values are floating point. */
    public boolean isFloatingPoint() {
        return this == F32 || this == F64 || this == BF16 || this == F16;
    }

    /**
     * @param name a header dtype string.
     * @return the dtype, or null when this reader does not support it.
     */
    public static Dtype fromFileName(final String name) {
        for (final Dtype d : values()) {
            if (d.fileName.equals(name)) {
                return d;
            }
        }
        return null;
    }

    /** @return the supported names, for messages. */
    public static String supportedNames() {
        final StringBuilder sb = new StringBuilder();
        for (final Dtype d : values()) {
            sb.append(sb.length() == 0 ? "" : ", ").append(d.fileName);
        }
        return sb.toString();
    }
}
