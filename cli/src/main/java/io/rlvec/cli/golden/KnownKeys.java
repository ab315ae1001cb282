package io.rlvec.cli.golden;

import java.util.List;

/**
 * The keys a case file may carry, for naming the nearest one when a file holds a key that is not a loss key (files
 * written by other tools carry descriptive keys: a storage dtype, a note).
 */
public final class KnownKeys {
    /** Top-level {@code __metadata__} keys of the parity format. */
    public static final List<String> METADATA = List.of(GoldenCase.FUNCTION, GoldenCase.GROUP, GoldenCase.PARAMS,
        GoldenCase.EXPECT_ERROR);
    /** verl's loss keys (actor config and global_batch_info names) and the params the handlers read. */
    public static final List<String> PARAMS = List.of("loss_mode", "clip_ratio", "clip_ratio_low", "clip_ratio_high",
        "clip_ratio_c", "loss_agg_mode", "dp_size", "batch_num_tokens", "global_batch_size", "loss_scale_factor",
        "entropy_coeff", "calculate_entropy", "use_kl_loss", "kl_loss_coef", "kl_loss_type", "temperature",
        "micro_batch_scale", "cliprange_value", "kl_penalty", "grad_of", "global_batch_info", "scenario", "expect_error");

    private KnownKeys() {
    }

    /**
     * @param key        an unknown key.
     * @param candidates the known ones.
     * @return the candidate at the smallest edit distance (ties: the first).
     */
    public static String nearest(final String key, final List<String> candidates) {
        String best = candidates.get(0);
        int bestDistance = Integer.MAX_VALUE;
        for (final String c : candidates) {
            final int d = distance(key, c);
            if (d < bestDistance) {
                best = c;
                bestDistance = d;
            }
        }
        return best;
    }

    /** @return the Levenshtein distance between two strings. */
    public static int distance(final String a, final String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                final int sub = prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
                cur[j] = Math.min(sub, Math.min(prev[j] + 1, cur[j - 1] + 1));
            }
            final int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
