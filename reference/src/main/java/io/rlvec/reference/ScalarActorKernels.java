package io.rlvec.reference;

import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/** The reference's elementwise passes of the actor composition: plain scalar loops. */
final class ScalarActorKernels implements ActorLoss.Kernels {

    @Override
    public void sequenceCounts(final TokenBatch batch, final long[] counts) {
        for (int s = 0; s < batch.numSequences(); s++) {
            counts[s] = VanillaPolicyLoss.countValid(batch.mask(), batch.offset(s), batch.offset(s + 1));
        }
    }

    @Override
    public void combine(final TokenBatch batch, final OffHeapArray grad, final float pgScale,
                        final OffHeapArray klGrad, final float[] seqWeights) {
        for (int s = 0; s < batch.numSequences(); s++) {
            final float w = klGrad != null ? seqWeights[s] : 0f;
            for (int t = batch.offset(s); t < batch.offset(s + 1); t++) {
                final float g = grad.getFloat(t) * pgScale;
                grad.setFloat(t, klGrad != null ? g + klGrad.getFloat(t) * w : g);
            }
        }
    }

    @Override
    public void fill(final TokenBatch batch, final float[] seqWeights, final OffHeapArray out) {
        final OffHeapArray mask = batch.mask();
        for (int s = 0; s < batch.numSequences(); s++) {
            for (int t = batch.offset(s); t < batch.offset(s + 1); t++) {
                out.setFloat(t, mask.getFloat(t) != 0f ? seqWeights[s] : 0f);
            }
        }
    }

    @Override
    public void klFullAccumulate(final Logits policy, final Logits reference, final double temperature,
                                 final OffHeapArray rowMask, final OffHeapArray kldOut, final OffHeapArray upstream,
                                 final OffHeapArray gradLogits) {
        KlLoss.full(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits, true);
    }
}
