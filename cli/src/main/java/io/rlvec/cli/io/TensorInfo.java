package io.rlvec.cli.io;

import java.util.Arrays;

/**
 * One tensor entry of a safetensors header: name, dtype, shape and byte range inside the data section.
 *
 * @param name  the tensor's name.
 * @param dtype element type.
 * @param shape dimensions (empty for a 0-d scalar).
 * @param begin first byte, relative to the start of the data section.
 * @param end   one past the last byte.
 */
public record TensorInfo(String name, Dtype dtype, long[] shape, long begin, long end) {

    /** Copies the shape so the record stays immutable. */
    public TensorInfo {
        shape = shape.clone();
    }

    /** @return a copy of the dimensions. */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** @return number of dimensions (0 for a scalar). */
    public int rank() {
        return shape.length;
    }

    /** @return dimension {@code i}. */
    public long dim(final int i) {
        return shape[i];
    }

    /** @return number of elements (the product of the shape; 1 for a scalar). */
    public long elementCount() {
        long n = 1;
        for (final long d : shape) {
            n *= d;
        }
        return n;
    }

    /** @return size of the data in bytes. */
    public long byteSize() {
        return end - begin;
    }

    /** @return e.g. {@code F32[16, 128]}. */
    public String describe() {
        return dtype.fileName() + Arrays.toString(shape);
    }

    @Override
    public boolean equals(final Object o) {
        return o instanceof TensorInfo t && t.name.equals(name) && t.dtype == dtype && Arrays.equals(t.shape, shape)
            && t.begin == begin && t.end == end;
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
        return name + " " + describe() + " @[" + begin + ", " + end + ")";
    }
}
