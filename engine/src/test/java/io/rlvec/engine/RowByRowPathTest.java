package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import io.rlvec.actor.ActorData;
import io.rlvec.kl.KlData;
import io.rlvec.reference.ActorLoss;
import io.rlvec.reference.ReferenceEngine;

/**
 * The vector engine's kernels make the actor loss from logits go row by row where the gradient is local (and only
 * there): the composition built on them calls {@code vocabStep} once per call for vanilla PPO with a per-token KL
 * estimator and never with {@code full}, and its gradients are the reference's bits either way. The parity suites
 * compare the engine with the reference whatever path it takes; this test shows which path that is.
 */
class RowByRowPathTest {

    /** The vector engine's own kernels, counting the row-by-row passes they run. */
    private static final class Counting implements ActorLoss.Kernels {
        private final ActorKernel inner;
        int steps;

        Counting(final ActorKernel inner) {
            this.inner = inner;
        }

        @Override
        public void sequenceCounts(final TokenBatch batch, final long[] counts) {
            inner.sequenceCounts(batch, counts);
        }

        @Override
        public void combine(final TokenBatch batch, final OffHeapArray grad, final float pgScale,
                            final OffHeapArray klGrad, final float[] seqWeights) {
            inner.combine(batch, grad, pgScale, klGrad, seqWeights);
        }

        @Override
        public void fill(final TokenBatch batch, final float[] seqWeights, final OffHeapArray out) {
            inner.fill(batch, seqWeights, out);
        }

        @Override
        public void klFullAccumulate(final Logits policy, final Logits reference, final double temperature,
                                     final OffHeapArray rowMask, final OffHeapArray kldOut,
                                     final OffHeapArray upstream, final OffHeapArray gradLogits) {
            inner.klFullAccumulate(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits);
        }

        @Override
        public boolean vocabStep(final Logits logits, final OffHeapArray labels, final double temperature,
                                 final OffHeapArray rowMask, final OffHeapArray logProb, final OffHeapArray entropy,
                                 final SoftmaxStats stats, final OffHeapArray gradLogProb,
                                 final OffHeapArray gradEntropy, final OffHeapArray gradLogits,
                                 final ActorLoss.TokenStep step) {
            steps++;
            return inner.vocabStep(logits, labels, temperature, rowMask, logProb, entropy, stats, gradLogProb,
                gradEntropy, gradLogits, step);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"low_var_kl", "mse+", "full"})
    void localGradientsGoRowByRow(final String kl) {
        final ActorData.Inputs in = ActorData.inputs(17, 30, false, false);
        final int rows = in.lp().length;
        final int v = 133;
        final SplittableRandom r = new SplittableRandom(17);
        final float[] z = new float[rows * v];
        final float[] zr = new float[rows * v];
        final int[] labels = new int[rows];
        for (int i = 0; i < rows; i++) {
            labels[i] = r.nextInt(v);
        }
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) (3 * r.nextGaussian());
            zr[i] = (float) (3 * r.nextGaussian());
        }
        final boolean full = kl.equals("full");
        final LossSpec spec = ActorData.spec(AggMode.SEQ_MEAN_TOKEN_MEAN, kl, 0.05, 0.5).toBuilder()
            .entropyCoeff(0.01).temperature(0.7).build();
        try (Blocks blocks = new Blocks(2);
             VectorEngine engine = new VectorEngine(2);
             Engine reference = new ReferenceEngine();
             TokenBatch batch = in.batch();
             OffHeapArray zd = OffHeapArray.of(z);
             OffHeapArray zrd = OffHeapArray.of(zr);
             OffHeapArray lab = OffHeapArray.ofInts(labels);
             OffHeapArray gl1 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray gl2 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, z.length);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, z.length)) {
            final Logits logits = Logits.of(zd, rows, v);
            final Logits ref = full ? Logits.of(zrd, rows, v) : null;
            final Counting kernels = new Counting(new ActorKernel(blocks, new KlKernel(), new VocabKernel()));
            final ActorLoss composition = new ActorLoss(engine, kernels);
            final ActorLossResult a = new ActorLossResult();
            final ActorLossResult b = new ActorLossResult();
            composition.fromLogits(spec, batch, logits, lab, ref, gl1, g1, a);
            reference.actorLoss(spec, batch, logits, lab, ref, gl2, g2, b);
            assertThat(kernels.steps).as("row-by-row passes, kl=%s", kl).isEqualTo(full ? 0 : 1);
            for (int i = 0; i < rows; i++) {
                assertThat(KlData.same(gl1.getFloat(i), gl2.getFloat(i))).as("kl=%s gradLogProb[%d]", kl, i).isTrue();
            }
            for (int i = 0; i < z.length; i++) {
                assertThat(KlData.same(g1.getFloat(i), g2.getFloat(i))).as("kl=%s gradLogits[%d]", kl, i).isTrue();
            }
            assertThat(a.metrics().keySet()).isEqualTo(b.metrics().keySet());
            composition.close();
        }
    }
}
