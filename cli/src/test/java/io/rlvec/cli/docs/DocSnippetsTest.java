package io.rlvec.cli.docs;

import static org.assertj.core.api.Assertions.assertThat;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The Java snippets of README.md and docs/api.md compile and run: each is a method of {@link DocSnippets}
 * (compiled with the tests), each method runs here on real data, and every snippet in the documents must appear,
 * line for line, in that source (imports among its imports), so a snippet edited in a document without its twin
 * here fails the build.
 */
class DocSnippetsTest {
    private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();
    private static final Pattern JAVA = Pattern.compile("```java\\n(.*?)```", Pattern.DOTALL);

    static List<String> snippets(final Path doc) throws IOException {
        final List<String> out = new ArrayList<>();
        final Matcher m = JAVA.matcher(Files.readString(doc));
        while (m.find()) {
            out.add(m.group(1));
        }
        return out;
    }

    private static List<String> lines(final String text) {
        final List<String> out = new ArrayList<>();
        for (final String l : text.split("\n")) {
            if (!l.isBlank()) {
                out.add(l.strip());
            }
        }
        return out;
    }

    @Test
    void everyDocumentedSnippetIsCompiledHere() throws IOException {
        final List<String> source = lines(Files.readString(ROOT.resolve(
            "cli/src/test/java/io/rlvec/cli/docs/DocSnippets.java")));
        int checked = 0;
        for (final String doc : List.of("README.md", "docs/api.md")) {
            for (final String snippet : snippets(ROOT.resolve(doc))) {
                final List<String> want = lines(snippet);
                final List<String> code = new ArrayList<>();
                for (final String l : want) {
                    if (l.startsWith("import ")) {
                        assertThat(source).as("%s: %s", doc, l).contains(l);
                    } else {
                        code.add(l);
                    }
                }
                assertThat(java.util.Collections.indexOfSubList(source, code)).as("%s snippet:%n%s", doc, snippet)
                    .isGreaterThanOrEqualTo(0);
                checked++;
            }
        }
        assertThat(checked).isEqualTo(8);
    }

    @Test
    void everySnippetRuns() {
        final float[] lp = {-1f, -1.2f, -0.8f, -2f, -0.5f, -1f, -1.1f, -0.9f, -0.3f, -1.5f};
        final float[] old = {-1.1f, -1.2f, -0.7f, -2.2f, -0.5f, -0.9f, -1.1f, -1f, -0.4f, -1.4f};
        final float[] adv = {1f, 1f, 1f, 1f, 1f, -0.5f, -0.5f, -0.5f, 0.2f, 0.2f};
        final boolean[] mask = {true, true, true, true, true, true, true, true, true, false};
        DocSnippets.readmeTenLines(lp, old, adv, mask);
        DocSnippets.apiPolicyLoss(lp, old, adv, mask);
        try (Engine engine = Engines.preferred();
             TokenBatch batch = TokenBatch.packed(3, 5, 2).column(Column.OLD_LOG_PROB, lp)
                 .column(Column.ROLLOUT_LOG_PROB, old).mask(mask).build();
             OffHeapArray isWeights = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
             OffHeapArray rsMask = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            assertThat(DocSnippets.apiRolloutCorrection(engine, batch, isWeights, rsMask))
                .containsKeys("rollout_corr/rollout_is_mean", "rollout_corr/rollout_rs_token_k1_masked_fraction",
                    "rollout_corr/chi2_seq");
        }

        final int rows = 10;
        final int vocab = 50;
        final float[] z = new float[rows * vocab];
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) Math.sin(i * 0.37);
        }
        final int[] tokens = new int[rows];
        for (int r = 0; r < rows; r++) {
            tokens[r] = (r * 7) % vocab;
        }
        try (Engine engine = Engines.preferred();
             TokenBatch batch = TokenBatch.packed(3, 5, 2).column(Column.OLD_LOG_PROB, old)
                 .column(Column.ADVANTAGES, adv).column(Column.REF_LOG_PROB, lp).mask(mask).build();
             OffHeapArray data = OffHeapArray.of(z);
             OffHeapArray gradLogits = OffHeapArray.allocate(ElementType.F32, z.length);
             OffHeapArray labels = OffHeapArray.ofInts(tokens);
             OffHeapArray logProb = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray entropy = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray gradLogProb = OffHeapArray.of(new float[] {1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
             OffHeapArray gradEntropy = OffHeapArray.allocate(ElementType.F32, rows);
             SoftmaxStats stats = SoftmaxStats.allocate(rows)) {
            final float loss = DocSnippets.apiActorLossFromLogits(engine, batch, data, vocab, tokens, gradLogits);
            assertThat(loss).isFinite();
            final Logits logits = Logits.of(data, rows, vocab);
            DocSnippets.apiVocabularyPass(engine, logits, labels, rows, logProb, entropy, gradLogProb, gradEntropy,
                gradLogits);
            final float[] saved = gradLogits.toFloatArray();
            engine.logProbs(logits, labels, 0.7, null, logProb, entropy, stats);
            DocSnippets.apiKeptExps(engine, logits, labels, logProb, entropy, stats, gradLogProb, gradEntropy,
                gradLogits);
            assertThat(gradLogits.toFloatArray()).containsExactly(saved);
            try (OffHeapArray sumPiSquared = OffHeapArray.allocate(ElementType.F32, rows)) {
                DocSnippets.apiSumPiSquared(engine, logits, labels, logProb, entropy, sumPiSquared, stats, null);
                for (final float v : sumPiSquared.toFloatArray()) {
                    assertThat(v).isBetween(1f / vocab, 1f);
                }
            }
        }
        try (Engine engine = Engines.preferred();
             TokenBatch valueBatch = TokenBatch.packed(3, 5, 2).column(Column.VPREDS, lp).column(Column.RETURNS, adv)
                 .column(Column.VALUES, old).mask(mask).build();
             OffHeapArray gradVpreds = OffHeapArray.allocate(ElementType.F32, valueBatch.numTokens())) {
            assertThat(DocSnippets.apiValueLoss(engine, valueBatch, gradVpreds)).isPositive();
        }
    }
}
