package io.rlvec.cli.diagnose;

import static io.rlvec.cli.diagnose.Stats.fmt;
import static io.rlvec.cli.diagnose.Thresholds.*;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

import io.rlvec.cli.diagnose.Estimator.Family;
import io.rlvec.cli.diagnose.Stats.Span;
import io.rlvec.cli.diagnose.Stats.Trend;

/**
 * The rules that turn a run's metrics into findings. Every threshold lives in {@link Thresholds}; each rule's
 * reading (what the pattern means, whether it is bad, what to check next) is written here, next to the test that
 * raises it.
 */
public final class Rules {
    private static final Pattern REWARD_COMPONENT = Pattern.compile("^rewards/[^/]+(/mean)?$");

    private final Run run;
    private final Estimator estimator;
    private final double clipRatio;
    private final List<Finding> out = new ArrayList<>();

    private Rules(final Run run, final Estimator estimator, final double clipRatio) {
        this.run = run;
        this.estimator = estimator;
        this.clipRatio = clipRatio;
    }

    /**
     * @param run the run
     * @param estimator its advantage estimator
     * @param clipRatio the PPO clip range (verl's clip_ratio, 0.2 by default) the ppo_kl rule compares with
     * @return the findings, most severe first, then by step
     */
    public static List<Finding> diagnose(final Run run, final Estimator estimator, final double clipRatio) {
        final Rules r = new Rules(run, estimator, clipRatio);
        r.nanInf();
        r.shortRun();
        r.pgLossSign();
        r.pgLossSplit();
        r.clipping();
        r.noPolicyMovement();
        r.entropy();
        r.klDrift();
        r.reward();
        r.rewardComponents();
        r.responseLength();
        r.gradNormSpikes();
        r.out.sort(Comparator.comparing(Finding::severity).reversed().thenComparingLong(Finding::firstStep));
        return List.copyOf(r.out);
    }

    private Optional<Series> finite(final Metric m) {
        return run.series(m).map(Series::finite).filter(s -> s.size() > 0);
    }

    /** @return the finite series of {@code m} when it has enough steps for trend rules, else null */
    private Series trendable(final Metric m) {
        return finite(m).filter(s -> s.size() >= MIN_TREND_STEPS).orElse(null);
    }

    private void add(final String rule, final Severity sev, final String title, final long first, final long last,
        final List<String> evidence, final String reading) {
        out.add(new Finding(rule, sev, title, first, last, List.copyOf(evidence), reading));
    }

    private static String at(final Series s, final int i) {
        return fmt(s.values()[i]) + " at step " + s.steps()[i];
    }

    private static String trendEvidence(final Series s, final Trend t) {
        return s.key() + ": median " + fmt(t.early()) + " over the first " + t.window() + " steps -> "
            + fmt(t.late()) + " over the last " + t.window() + " (z = " + fmt(t.z()) + ")";
    }

    // ---------------------------------------------------------------------------------------------------------

    private void nanInf() {
        final List<String> ev = new ArrayList<>();
        long first = Long.MAX_VALUE;
        long last = Long.MIN_VALUE;
        for (final String key : run.keys()) {
            final Series s = run.series(key);
            int count = 0;
            final StringBuilder where = new StringBuilder();
            for (int i = 0; i < s.size(); i++) {
                if (!Double.isFinite(s.values()[i])) {
                    if (count < 5) {
                        where.append(count == 0 ? "" : ", ").append(fmt(s.values()[i])).append(" at step ")
                            .append(s.steps()[i]);
                    }
                    count++;
                    first = Math.min(first, s.steps()[i]);
                    last = Math.max(last, s.steps()[i]);
                }
            }
            if (count > 0) {
                ev.add(key + ": " + where + (count > 5 ? ", ..." : "") + " (" + count + " of " + s.size() + " steps)");
            }
        }
        if (!ev.isEmpty()) {
            add("nan-inf", Severity.CRITICAL, "NaN or Inf in the logged metrics", first, last, ev,
                "A non-finite metric means something overflowed or divided by zero; once it reaches the loss or the "
                    + "gradient, the weights are poisoned and every later step is meaningless. Look at the first step "
                    + "listed and at what happened just before it: a grad_norm spike, a reward function returning NaN, "
                    + "a ratio exp(log_prob - old_log_prob) overflowing (verl clamps the log-ratio at +-20), fp16 "
                    + "overflow, an empty batch (a mean over zero tokens). Restart from the last checkpoint before "
                    + "it, with a lower learning rate or gradient clipping, after fixing the source.");
        }
    }

    private void shortRun() {
        final int n = run.rows().size();
        if (n < MIN_TREND_STEPS) {
            add("short-run", Severity.INFO, "Short run: " + n + " logged steps", run.rows().firstKey(),
                run.rows().lastKey(), List.of(n + " steps logged; trend rules need " + MIN_TREND_STEPS),
                "Too few steps to tell a trend from noise, so only level checks (NaN/Inf, spikes, reward "
                    + "components) ran. Early RL curves are noisy: pg_loss changing sign and a jumpy reward over a "
                    + "handful of steps say nothing yet. Diagnose again after more steps.");
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    private void pgLossSign() {
        final Series s = trendable(Metric.PG_LOSS);
        if (s == null) {
            return;
        }
        final double[] v = s.values();
        final boolean critic = estimator.family() == Family.CRITIC;
        final int k = critic ? PG_WINDOW_CRITIC : PG_WINDOW_NORMALISED;
        final int minRun = critic ? PG_MIN_RUN_CRITIC : PG_MIN_RUN_NORMALISED;
        final double[] rm = Stats.rollingMedian(v, k);
        final double noise = Stats.noise(v);
        final boolean[] pos = new boolean[v.length];
        final boolean[] neg = new boolean[v.length];
        for (int i = 0; i < v.length; i++) {
            final int from = Math.max(0, i - k / 2);
            final int to = Math.min(v.length, from + k);
            int p = 0;
            int q = 0;
            double sum = 0;
            for (int j = from; j < to; j++) {
                p += v[j] > 0 ? 1 : 0;
                q += v[j] < 0 ? 1 : 0;
                sum += v[j];
            }
            final int m = to - from;
            // The window's mean must also stand out from the run's step-to-step noise: a noisy pg_loss (a
            // critic's, swinging +-0.5 from batch to batch) has one-signed stretches by chance over a few hundred
            // steps, while a quiet one (GRPO's, +-0.005) that climbs to 0.5 is no accident.
            final boolean significant = Math.abs(sum / m) > TREND_Z * noise / Math.sqrt(m);
            pos[i] = significant && rm[i] > PG_STRONG && p >= PG_SIGN_SHARE_WINDOW * m;
            neg[i] = significant && rm[i] < -PG_STRONG && q >= PG_SIGN_SHARE_WINDOW * m;
        }
        final String est = " (" + estimator.name() + ")";
        boolean any = false;
        for (final boolean positive : new boolean[] {true, false}) {
            final Reading r = strongReading(critic, positive);
            for (final Span sp : Stats.spans(positive ? pos : neg, minRun)) {
                any = true;
                add("pg-loss-sign", r.severity(), r.title() + est, s.steps()[sp.from()], s.steps()[sp.to()],
                    spanEvidence(s, rm, sp, k), r.text());
            }
        }
        if (any) {
            return;
        }
        int p = 0;
        int q = 0;
        for (final double x : v) {
            p += x > 0 ? 1 : 0;
            q += x < 0 ? 1 : 0;
        }
        final double med = Stats.median(v);
        final List<String> ev = new ArrayList<>();
        ev.add(s.key() + ": median " + fmt(med) + ", range " + fmt(min(v)) + " .. " + fmt(max(v)) + ", " + p
            + " of " + v.length + " steps > 0, " + q + " < 0");
        final Trend trend = Stats.trend(v);
        ev.add(trendEvidence(s, trend) + (trend.rises() ? ": trending up" : trend.falls() ? ": trending down"
            : ": no trend"));
        run.series(Metric.ADVANTAGE_MEAN).map(Series::finite).filter(a -> a.size() > 0).ifPresent(a ->
            ev.add(a.key() + ": median " + fmt(Stats.median(a.values()))));
        final long first = s.steps()[0];
        final long last = s.steps()[v.length - 1];
        if (p >= PG_SIGN_SHARE_RUN * v.length || q >= PG_SIGN_SHARE_RUN * v.length) {
            final boolean negative = q > p;
            if (critic) {
                add("pg-loss-sign", Severity.INFO, "pg_loss mostly " + (negative ? "negative" : "positive")
                    + " but small with a critic" + est, first, last, ev, negative
                    ? "The policy keeps doing a little better than its critic predicts: the usual picture while the "
                        + "reward climbs and the critic trails slightly. Not a problem at this size (|median| below "
                        + fmt(PG_STRONG) + " of a whitened advantage); if it grows, the critic is lagging (check "
                        + "critic/vf_loss and vf_explained_var)."
                    : "The policy does a little worse than its critic predicts, step after step, at a small size: "
                        + "common on a flat or slowly falling reward. Watch the reward and critic/vf_loss; it matters "
                        + "if it grows past " + fmt(PG_STRONG) + ".");
            } else {
                add("pg-loss-sign", Severity.INFO, "pg_loss mostly " + (negative ? "negative" : "positive")
                    + " but small with normalised advantages" + est, first, last, ev,
                    "Zero-mean advantages put on-policy pg_loss near 0; a small persistent "
                        + (negative ? "negative" : "positive") + " value under token-mean aggregation usually means "
                        + (negative ? "positive-advantage (passing)" : "negative-advantage (failing)")
                        + " responses carry a few more tokens than the others (the token-weighted advantage mean has "
                        + "that sign), or a slight ratio drift on one side. Small and steady: not a problem.");
            }
        } else {
            add("pg-loss-sign", Severity.INFO, "pg_loss oscillates around 0" + est, first, last, ev, critic
                ? "No persistent sign: the policy does better than its critic predicts about as often as worse, "
                    + "so actor and critic keep pace. This is the healthy picture for PPO with a critic; the size "
                    + "of the swings reflects batch noise, not progress (read progress from the reward)."
                : "No persistent sign, as expected for zero-mean normalised advantages: pg_loss is not a progress "
                    + "signal under this estimator (read progress from the reward).");
        }
    }

    /** A finding's severity, title and reading. */
    private record Reading(Severity severity, String title, String text) {
    }

    /** The reading of a strongly one-signed pg_loss stretch, per estimator family and sign. */
    private static Reading strongReading(final boolean critic, final boolean positive) {
        if (critic && positive) {
            return new Reading(Severity.WARNING, "pg_loss persistently positive with a critic",
                "pg_loss = -E[clipped ratio * A]; with a critic a positive value means the sampled actions did "
                    + "worse than the value baseline predicted. Oscillating around 0 is healthy; staying positive "
                    + "this long means the policy keeps under-performing its critic: it is degrading or not "
                    + "learning, or the critic overestimates (stale after a reward change). Check the reward curve "
                    + "over these steps, critic/vf_loss and vf_explained_var, and the actor learning rate.");
        }
        if (critic) {
            return new Reading(Severity.WARNING, "pg_loss persistently strongly negative with a critic",
                "With a critic a negative pg_loss means the sampled actions did better than the value baseline "
                    + "predicted. Slightly negative while reward climbs is normal; strongly negative for this long "
                    + "means the critic lags and underestimates, so advantages stay inflated and the actor takes "
                    + "large steps on them (an instability risk). Check critic/vf_loss and vf_explained_var, give "
                    + "the critic a higher learning rate or a warm-up, and watch pg_clipfrac and ppo_kl.");
        }
        if (positive) {
            return new Reading(Severity.WARNING, "pg_loss strongly positive with normalised advantages",
                "Group- or batch-normalised advantages have zero mean, so on-policy pg_loss is near 0 by "
                    + "construction. A large positive value means the A<0 side dominates the weighted sum: "
                    + "under token-mean aggregation, responses with negative advantage carry many more tokens "
                    + "than those with positive advantage (long failing answers, rambling to the length limit), "
                    + "or the ratio rose on A<0 tokens and fell on A>0 ones. It often precedes or accompanies a "
                    + "collapse: check the reward, the response length and the entropy over the same steps, and "
                    + "the A>0 / A<0 split where this engine logged it.");
        }
        return new Reading(Severity.INFO, "pg_loss strongly negative with normalised advantages",
            "Zero-mean advantages put on-policy pg_loss near 0; a clearly negative value means the A>0 side "
                + "dominates: responses with positive advantage carry more tokens under token-mean (long "
                + "correct answers), or the ratio rose on A>0 tokens and fell on A<0 ones, the direction the "
                + "update is meant to move. Not a problem by itself; if the response length grows with it, "
                + "watch for length hacking.");
    }

    private static List<String> spanEvidence(final Series s, final double[] rm, final Span sp, final int k) {
        double peak = s.values()[sp.from()];
        int peakAt = sp.from();
        for (int i = sp.from(); i <= sp.to(); i++) {
            if (Math.abs(s.values()[i]) > Math.abs(peak)) {
                peak = s.values()[i];
                peakAt = i;
            }
        }
        return List.of(s.key() + ": rolling median (" + k + " steps) " + fmt(rm[sp.from()]) + " at step "
            + s.steps()[sp.from()] + " .. " + fmt(rm[sp.to()]) + " at step " + s.steps()[sp.to()]
            + ", largest " + at(s, peakAt), "threshold: |rolling median| > " + fmt(PG_STRONG) + " with "
            + fmt(PG_SIGN_SHARE_WINDOW * 100) + "% of the window one-signed");
    }

    private void pgLossSplit() {
        final Optional<Series> pos = finite(Metric.POS_RATIO_GT1);
        final Optional<Series> neg = finite(Metric.NEG_RATIO_GT1);
        final Optional<Series> pp = finite(Metric.PG_LOSS_POS);
        final Optional<Series> pn = finite(Metric.PG_LOSS_NEG);
        if (pos.isEmpty() || neg.isEmpty()) {
            return;
        }
        final Series a = pos.get();
        final Series b = neg.get();
        final Map<Long, Double> bByStep = byStep(b);
        final boolean[] wrong = new boolean[a.size()];
        for (int i = 0; i < a.size(); i++) {
            final Double nb = bByStep.get(a.steps()[i]);
            wrong[i] = nb != null && a.values()[i] < SPLIT_WRONG_WAY && nb > 1 - SPLIT_WRONG_WAY;
        }
        final List<String> ev = new ArrayList<>();
        ev.add(a.key() + ": median " + fmt(Stats.median(a.values())));
        ev.add(b.key() + ": median " + fmt(Stats.median(b.values())));
        pp.ifPresent(x -> ev.add(x.key() + ": median " + fmt(Stats.median(x.values()))));
        pn.ifPresent(x -> ev.add(x.key() + ": median " + fmt(Stats.median(x.values()))));
        final List<Span> spans = Stats.spans(wrong, SPLIT_MIN_STEPS);
        for (final Span sp : spans) {
            final List<String> e = new ArrayList<>(ev);
            e.add(0, "steps " + a.steps()[sp.from()] + "-" + a.steps()[sp.to()] + ": " + a.key() + " "
                + fmt(a.values()[sp.from()]) + " .. " + fmt(a.values()[sp.to()]) + " (< " + fmt(SPLIT_WRONG_WAY)
                + "), " + b.key() + " > " + fmt(1 - SPLIT_WRONG_WAY));
            add("pg-loss-split", Severity.WARNING, "Updates move the ratio against the advantages",
                a.steps()[sp.from()], a.steps()[sp.to()], e,
                "On most A>0 tokens the new policy is less likely than the old one (ratio < 1) and on most A<0 "
                    + "tokens more likely: the opposite of what the policy gradient asks. pg_loss then turns "
                    + "positive from the split (A>0 part shrinking towards 0, A<0 part growing). Usual causes: "
                    + "stale or off-policy data (old_log_prob from other weights than the rollout), a learning rate "
                    + "so high that mini-batch steps overshoot, a sign error in a custom advantage or loss. Check "
                    + "how old_log_prob is computed, ppo_epochs and mini-batch count, and the learning rate.");
        }
        if (spans.isEmpty()) {
            add("pg-loss-split", Severity.INFO, "A>0 / A<0 split: the ratio moves with the advantages",
                a.steps()[0], a.steps()[a.size() - 1], ev,
                "The engine's split of pg_loss: the A>0 part is negative (good tokens pushed up), the A<0 part "
                    + "positive; a negative total means the ratio rose on A>0 tokens and fell on A<0 ones more than "
                    + "the reverse. The shares of tokens with ratio > 1 on each side show the update going the way "
                    + "the advantages ask (both 0 means ratio == 1: on-policy, the first mini-batch).");
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    private void clipping() {
        finite(Metric.CLIPFRAC).ifPresent(s -> flagHigh(s, CLIPFRAC_HIGH, CLIP_WINDOW, "clipping",
            "Policy updates clipped on a large share of tokens",
            "pg_clipfrac is the share of tokens where the PPO clip is active: the new policy already moved more than "
                + "clip_ratio from the rollout policy on them, so their gradient is cut. A few percent is normal; "
                + "this much means each step overshoots the trust region and most of the batch stops teaching. "
                + "Lower the learning rate, use fewer ppo_epochs or mini-batches per batch, or check that "
                + "old_log_prob comes from the rollout weights."));
        final double kl = PPO_KL_HIGH_OF_CLIP * clipRatio * clipRatio / 2;
        finite(Metric.PPO_KL).ifPresent(s -> flagHigh(s, kl, CLIP_WINDOW, "clipping",
            "ppo_kl large against the clip range",
            "ppo_kl = mean(old_log_prob - log_prob): how far one update moved the policy. The clip range "
                + fmt(clipRatio) + " allows about clip_ratio^2/2 = " + fmt(kl) + " nats per token; above it the "
                + "average token is at or beyond the clip boundary and the update is larger than PPO's trust region "
                + "intends. Lower the learning rate or the number of updates per batch; compare with pg_clipfrac."));
        finite(Metric.CLIPFRAC_LOWER).ifPresent(s -> flagHigh(s, CLIPFRAC_LOWER_HIGH, CLIP_WINDOW, "clipping",
            "Dual clip active on many A<0 tokens",
            "pg_clipfrac_lower is the share of A<0 tokens held by the dual-clip bound clip_ratio_c: their ratio grew "
                + "beyond clip_ratio_c (3 by default), i.e. the policy made bad tokens several times more likely "
                + "than at rollout. Rare in healthy runs; many of them point at off-policy data, a stale "
                + "old_log_prob, or a rollout/training mismatch (different precision or sampling settings)."));
    }

    private void flagHigh(final Series s, final double threshold, final int k, final String rule, final String title,
        final String reading) {
        final double[] rm = Stats.rollingMedian(s.values(), k);
        final boolean[] f = new boolean[rm.length];
        for (int i = 0; i < rm.length; i++) {
            f[i] = rm[i] > threshold;
        }
        for (final Span sp : Stats.spans(f, Math.min(3, rm.length))) {
            double peak = Double.NEGATIVE_INFINITY;
            int at = sp.from();
            for (int i = sp.from(); i <= sp.to(); i++) {
                if (s.values()[i] > peak) {
                    peak = s.values()[i];
                    at = i;
                }
            }
            add(rule, Severity.WARNING, title, s.steps()[sp.from()], s.steps()[sp.to()],
                List.of(s.key() + ": rolling median (" + k + " steps) above " + fmt(threshold) + ", largest "
                    + at(s, at)), reading);
        }
    }

    private void noPolicyMovement() {
        final Optional<String> cfKey = run.keyOf(Metric.CLIPFRAC);
        final Optional<String> klKey = run.keyOf(Metric.PPO_KL);
        if (cfKey.isEmpty() || klKey.isEmpty()) {
            return;
        }
        final List<Long> steps = new ArrayList<>();
        final List<Boolean> zero = new ArrayList<>();
        run.rows().forEach((step, m) -> {
            final Double cf = m.get(cfKey.get());
            final Double kl = m.get(klKey.get());
            if (cf != null && kl != null) {
                steps.add(step);
                zero.add(cf == 0.0 && Math.abs(kl) < ZERO_PPO_KL);
            }
        });
        final boolean[] f = new boolean[zero.size()];
        for (int i = 0; i < f.length; i++) {
            f[i] = zero.get(i);
        }
        for (final Span sp : Stats.spans(f, ZERO_MIN_STEPS)) {
            final long first = steps.get(sp.from());
            final long last = steps.get(sp.to());
            final List<String> ev = new ArrayList<>();
            ev.add(cfKey.get() + " == 0 and |" + klKey.get() + "| < " + fmt(ZERO_PPO_KL) + " on all "
                + (sp.to() - sp.from() + 1) + " steps " + first + "-" + last);
            String extra = "";
            if (run.roundedKeys().contains(klKey.get()) || run.roundedKeys().contains(cfKey.get())) {
                ev.add("the log prints these with 3 decimals: 0.000 stands for anything below 0.0005");
                extra = " The log rounds to 3 decimals, so a very small movement cannot be told from none.";
            }
            final Optional<Series> ent = finite(Metric.ENTROPY);
            if (ent.isPresent()) {
                final Series e = ent.get();
                final int i = e.indexOf(first);
                final int j = Math.max(i, e.indexOf(last + 1) - 1);
                if (i < e.size()) {
                    final double med = Stats.median(e.values(), i, j + 1);
                    if (med < ENTROPY_FLOOR) {
                        ev.add(e.key() + ": median " + fmt(med) + " over these steps");
                        extra += " Here the entropy is collapsed over the same steps: the policy is (nearly) "
                            + "deterministic, so old and new log-probs agree and nothing moves; this is a "
                            + "consequence of the collapse, not a separate bug.";
                    }
                }
            }
            add("no-policy-movement", Severity.WARNING, "ppo_kl and pg_clipfrac identically 0", first, last, ev,
                "The ratio exp(log_prob - old_log_prob) is 1 on every token, step after step: the update never moves "
                    + "the policy away from the one that sampled the batch. That happens legitimately with one "
                    + "mini-batch and one PPO epoch (fully on-policy: the loss is then a plain policy gradient and "
                    + "clipping never engages), and by bug when old_log_prob is computed with the already-updated "
                    + "weights or log_prob is reused as old_log_prob. Check ppo_mini_batch_size against the batch "
                    + "size and ppo_epochs; if several updates per batch are configured, check where old_log_prob "
                    + "comes from." + extra);
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    private void entropy() {
        final Series s = trendable(Metric.ENTROPY);
        if (s == null) {
            return;
        }
        final double[] v = s.values();
        final Trend t = Stats.trend(v);
        final long last = s.steps()[v.length - 1];
        if (t.falls() && t.late() < ENTROPY_FLOOR && t.late() < t.early() * ENTROPY_COLLAPSE_RATIO) {
            final int i = Math.max(0, Stats.firstIndex(v, x -> x < t.early() * 0.5, 0));
            add("entropy", Severity.CRITICAL, "Entropy collapse", s.steps()[i], last,
                List.of(trendEvidence(s, t), at(s, 0) + " -> " + at(s, i) + " -> " + at(s, v.length - 1)),
                "The policy's token entropy fell to almost 0: it now picks the same tokens every time, so rollouts "
                    + "stop exploring, groups of responses become identical (zero advantage: nothing left to learn "
                    + "from) and the ratio stays at 1. Once there, RL rarely recovers. Look at what happened where "
                    + "the fall started (a reward or KL-penalty term that rewards short or repetitive output, a "
                    + "learning-rate or grad_norm spike). Restart from a checkpoint before it with a lower learning "
                    + "rate, an entropy bonus (entropy_coeff), clip-higher (clip_ratio_high > clip_ratio_low), or a "
                    + "fixed reward.");
        } else if (t.falls() && t.late() < t.early() * ENTROPY_DECLINE_RATIO && t.late() < ENTROPY_LOW) {
            final int i = Math.max(0, Stats.firstIndex(v, x -> x < t.early() * 0.75, 0));
            add("entropy", Severity.WARNING, "Entropy falling towards collapse", s.steps()[i], last,
                List.of(trendEvidence(s, t)),
                "Entropy fell by more than half and is now low: exploration is drying up. It is not collapsed yet, "
                    + "but groups of responses grow alike and the learning signal thins. If the reward still rises "
                    + "this can be fine for a while; if it stalls, add an entropy bonus, raise clip_ratio_high, or "
                    + "lower the learning rate.");
        } else if (t.falls() && t.late() < t.early() * ENTROPY_DECLINE_RATIO) {
            final int i = Math.max(0, Stats.firstIndex(v, x -> x < t.early() * 0.75, 0));
            add("entropy", Severity.INFO, "Entropy declining steadily", s.steps()[i], last,
                List.of(trendEvidence(s, t)),
                "Entropy falls as the policy becomes more confident on the task: expected while the reward rises, "
                    + "and not a problem while it stays above " + fmt(ENTROPY_LOW) + " nats per token. Keep an eye on "
                    + "it if the reward stops improving.");
        } else if (t.rises() && t.late() > t.early() * ENTROPY_EXPLOSION_RATIO) {
            final int i = Math.max(0, Stats.firstIndex(v, x -> x > t.early() * 1.5, 0));
            add("entropy", Severity.WARNING, "Entropy explosion", s.steps()[i], last, List.of(trendEvidence(s, t)),
                "Entropy more than doubled: the policy spreads its probability over many more tokens, which in "
                    + "language models shows up as incoherent or multilingual gibberish. Usual causes: a too-large "
                    + "entropy bonus, a learning rate too high, negative-advantage updates dominating (pushing "
                    + "probability away from sampled tokens onto everything else), or a numerical problem. Check "
                    + "samples, the entropy_coeff, and pg_clipfrac / grad_norm over these steps.");
        } else if (t.early() < ENTROPY_LOW) {
            add("entropy", Severity.INFO, "Entropy low from the start", s.steps()[0], last,
                List.of(trendEvidence(s, t)),
                "Entropy is already below " + fmt(ENTROPY_LOW) + " nats per token at the first logged step and stays "
                    + "there: the model is confident on this data (a strong or already-trained model, or a resumed "
                    + "run). Little exploration is left, so RL gains are small; that fits a run that has converged.");
        }
    }

    private void klDrift() {
        final Series s = trendable(Metric.KL_REF);
        if (s == null) {
            return;
        }
        final double[] v = s.values();
        final Trend t = Stats.trend(v);
        if (!t.rises()) {
            return;
        }
        final Severity sev = t.late() >= KL_CRITICAL ? Severity.CRITICAL
            : t.late() >= KL_WARN ? Severity.WARNING : Severity.INFO;
        final int i = Math.max(0, Stats.firstIndex(v, x -> x >= t.early() + 0.25 * (t.late() - t.early()), 0));
        final String reading = switch (sev) {
            case INFO -> "The KL to the reference grows as the policy learns, to a moderate level: expected, and the "
                + "KL penalty's job is to keep it there. Worth watching if it keeps climbing without the reward "
                + "improving.";
            case WARNING -> "The policy keeps drifting from the reference model and the KL is now large: the KL term "
                + "no longer holds it, so the model may be trading language quality for reward (reward hacking). "
                + "Check samples, and raise kl_coef / kl_loss_coef or use an adaptive KL controller if the reward "
                + "gain does not justify it.";
            case CRITICAL -> "The KL to the reference exploded: the policy has moved far from the reference model, "
                + "usually into degenerate output (repetition, one-token or empty answers, gibberish). When the KL "
                + "is in the reward (use_kl_in_reward) the penalty then dominates the task reward and drives the "
                + "collapse further. Stop the run; restart from a checkpoint before the rise with a lower learning "
                + "rate or a smaller kl coefficient, and check the reference model and the KL estimator.";
        };
        add("kl-drift", sev, "KL to the reference drifting up (" + s.key() + ")", s.steps()[i],
            s.steps()[v.length - 1], List.of(trendEvidence(s, t), "largest " + at(s, argmax(v))), reading);
    }

    private void reward() {
        final Series s = trendable(Metric.REWARD);
        if (s == null) {
            return;
        }
        final double[] v = s.values();
        final Trend t = Stats.trend(v);
        final long first = s.steps()[0];
        final long last = s.steps()[v.length - 1];
        if (t.falls()) {
            final double lo = min(v);
            final double range = max(v) - lo;
            boolean floor = t.late() <= lo + REWARD_FLOOR_FRACTION * range;
            final List<String> ev = new ArrayList<>(List.of(trendEvidence(s, t)));
            final Optional<Series> mx = finite(Metric.REWARD_MAX);
            final Optional<Series> mn = finite(Metric.REWARD_MIN);
            if (floor && mx.isPresent() && mn.isPresent()) {
                final double hi = Stats.median(mx.get().values(), mx.get().size() - t.window(), mx.get().size());
                final double low = Stats.median(mn.get().values(), mn.get().size() - t.window(), mn.get().size());
                floor = hi == low;
                ev.add(mx.get().key() + " / " + mn.get().key() + " over the last " + t.window() + " steps: "
                    + fmt(hi) + " / " + fmt(low) + (floor ? " (no spread left)" : ""));
            }
            final int i = Math.max(0, Stats.firstIndex(v, x -> x <= t.early() + 0.5 * (t.late() - t.early()), 0));
            if (floor) {
                add("reward", Severity.CRITICAL, "Reward collapsed to its floor", s.steps()[i], last, ev,
                    "The reward fell to the lowest value of the run and every response now scores the same. With "
                        + "no spread, group-normalised advantages are all 0 (nothing to learn from) and a critic "
                        + "learns a constant: training has stopped. It usually comes with a collapse of entropy or "
                        + "response length (read those findings): the policy found a degenerate output. Stop, look "
                        + "at samples from the steps where the fall began, and restart from an earlier checkpoint "
                        + "after fixing the cause.");
            } else {
                add("reward", Severity.WARNING, "Reward falling", s.steps()[i], last, ev,
                    "The reward is clearly lower at the end than at the start: the policy is getting worse at the "
                        + "task. Common causes: learning rate too high, KL penalty or another reward term "
                        + "overpowering the task reward, reward hacking on one component, entropy collapse, or a "
                        + "data/reward-function change. Compare with the entropy, KL and response-length curves over "
                        + "the same steps.");
            }
        } else if (t.rises()) {
            add("reward", Severity.INFO, "Reward rising", first, last, List.of(trendEvidence(s, t)),
                "The policy improves on the task. Read the other findings against this: a falling entropy or a "
                    + "slowly rising KL while the reward climbs are the expected cost of learning.");
        } else if (v.length >= PLATEAU_MIN_STEPS) {
            add("reward", Severity.INFO, "Reward plateau at " + fmt(Stats.median(v)), first, last,
                List.of(trendEvidence(s, t), s.key() + ": range " + fmt(min(v)) + " .. " + fmt(max(v))),
                "No significant change over " + v.length + " steps: the run has converged on this data (or stalled). "
                    + "Near the reward's maximum this is the end of useful training: stop, or move to harder data. "
                    + "Far from it, the learning signal is too weak: check that groups still have reward spread, "
                    + "the learning rate, and the entropy.");
        }
    }

    private void rewardComponents() {
        final Optional<Series> total = finite(Metric.REWARD);
        final int n = run.rows().size();
        if (total.isEmpty() || total.get().size() < COMPONENT_MIN_STEPS) {
            return;
        }
        final double[] tv = total.get().values();
        final double totalEarly = ends(tv, true);
        final double totalLate = ends(tv, false);
        final boolean totalFalls = tv.length >= MIN_TREND_STEPS ? Stats.trend(tv).falls() : totalLate < totalEarly;
        if (totalFalls) {
            return;
        }
        final List<String> falling = new ArrayList<>();
        final List<String> rising = new ArrayList<>();
        long first = Long.MAX_VALUE;
        long last = Long.MIN_VALUE;
        for (final String key : run.keys()) {
            if (!REWARD_COMPONENT.matcher(key).matches()) {
                continue;
            }
            final Series c = run.series(key).finite();
            if (c.size() < COMPONENT_MIN_STEPS) {
                continue;
            }
            final double[] v = c.values();
            final double e = ends(v, true);
            final double l = ends(v, false);
            final String text = key + ": " + fmt(e) + " -> " + fmt(l) + " (" + (l >= e ? "+" : "")
                + fmt(100 * (l - e) / Math.abs(e)) + "%, steps " + c.steps()[0] + "-" + c.steps()[v.length - 1] + ")";
            final boolean steady = v.length >= MIN_TREND_STEPS ? Stats.trend(v).falls() : monotoneDown(v);
            if (e != 0 && l < e - COMPONENT_FALL * Math.abs(e) && steady) {
                falling.add(text);
                first = Math.min(first, c.steps()[0]);
                last = Math.max(last, c.steps()[v.length - 1]);
            } else if (e != 0 && l > e + COMPONENT_FALL * Math.abs(e)) {
                rising.add(text);
            }
        }
        if (falling.isEmpty()) {
            return;
        }
        final List<String> ev = new ArrayList<>(falling);
        ev.add(total.get().key() + " (total): " + fmt(totalEarly) + " -> " + fmt(totalLate));
        ev.addAll(rising.stream().map(r -> "rising: " + r).toList());
        add("reward-components", Severity.WARNING, "Reward components traded away while the total holds", first, last,
            ev, "The total reward holds or rises while " + (falling.size() == 1 ? "a component falls" : "components "
                + "fall") + ": the policy is optimising the easier terms (often format or length) at the expense of "
                + "the one that matters (often accuracy). This is a form of reward hacking. Check the component "
                + "weights, make the format reward conditional on or smaller than the accuracy reward, and read "
                + "samples." + (n < MIN_TREND_STEPS ? " This rests on " + n + " logged steps only." : ""));
    }

    private void responseLength() {
        final Optional<Series> opt = finite(Metric.RESPONSE_LENGTH);
        if (opt.isEmpty()) {
            return;
        }
        final Series s = opt.get();
        final double[] v = s.values();
        if (v.length >= MIN_TREND_STEPS) {
            final Trend t = Stats.trend(v);
            if (t.falls() && t.late() < t.early() * LENGTH_COLLAPSE_RATIO) {
                final boolean degenerate = t.late() <= LENGTH_DEGENERATE;
                final int i = Math.max(0, Stats.firstIndex(v, x -> x < t.early() * 0.75, 0));
                add("response-length", degenerate ? Severity.CRITICAL : Severity.WARNING,
                    degenerate ? "Response length collapsed to " + fmt(t.late()) + (t.late() == 1 ? " token" : " tokens") : "Response length collapsing",
                    s.steps()[i], s.steps()[v.length - 1], List.of(trendEvidence(s, t), "smallest " + at(s, argmin(v))),
                    degenerate
                        ? "Responses shrank to a handful of tokens: the policy answers with (almost) nothing. This is "
                            + "a degenerate optimum: something in the reward (a length or KL penalty, a format check "
                            + "that an empty answer passes, a KL-in-reward term that is smallest for short output) "
                            + "pays more for saying nothing than for trying. Stop; check the reward terms on an empty "
                            + "answer, then restart from a checkpoint before the fall."
                        : "The mean response length halved. Shorter answers can be genuine (the model drops "
                            + "unnecessary reasoning), but a fast fall often means a penalty term favours short output "
                            + "or the model learned to stop early. Read samples; check length penalties, the KL term "
                            + "and whether the reward still rises.");
            }
        }
        finite(Metric.RESPONSE_CLIP).ifPresentOrElse(c -> {
            final double[] rm = Stats.rollingMedian(c.values(), LENGTH_WINDOW);
            final boolean[] f = new boolean[rm.length];
            for (int i = 0; i < rm.length; i++) {
                f[i] = rm[i] >= LENGTH_CLIP_HIGH;
            }
            for (final Span sp : Stats.spans(f, LENGTH_MIN_STEPS)) {
                addAtMax(c.steps()[sp.from()], c.steps()[sp.to()], List.of(c.key() + ": rolling median ("
                    + LENGTH_WINDOW + " steps) >= " + fmt(LENGTH_CLIP_HIGH) + ", largest " + at(c, argmax(c.values())
                    )));
            }
        }, () -> finite(Metric.RESPONSE_LENGTH_MAX).ifPresent(mx -> {
            final Map<Double, Integer> counts = new HashMap<>();
            for (final double x : mx.values()) {
                counts.merge(x, 1, Integer::sum);
            }
            final Map.Entry<Double, Integer> mode = counts.entrySet().stream().max(Map.Entry.comparingByValue())
                .orElseThrow();
            if (mode.getValue() * 2 < mx.size()) {
                return;
            }
            final double limit = mode.getKey();
            final double[] rm = Stats.rollingMedian(v, LENGTH_WINDOW);
            final boolean[] f = new boolean[rm.length];
            for (int i = 0; i < rm.length; i++) {
                f[i] = rm[i] >= LENGTH_NEAR_MAX * limit;
            }
            for (final Span sp : Stats.spans(f, LENGTH_MIN_STEPS)) {
                addAtMax(s.steps()[sp.from()], s.steps()[sp.to()], List.of(s.key() + ": rolling median ("
                    + LENGTH_WINDOW + " steps) >= " + fmt(LENGTH_NEAR_MAX) + " x " + fmt(limit) + " (the most "
                    + "common " + mx.key() + ", taken as the length limit)"));
            }
        }));
    }

    private void addAtMax(final long first, final long last, final List<String> ev) {
        add("response-length", Severity.WARNING, "Responses hit the maximum length", first, last, ev,
            "Many responses are cut at the length limit: they get no final answer, so a correctness reward scores "
                + "them as failures whatever their reasoning, and their tokens still weigh in the loss. If the length "
                + "keeps growing the policy may be rambling (or length-hacking); if the task needs it, raise "
                + "max_response_length. Consider an overlong penalty or excluding truncated responses from the loss.");
    }

    private void gradNormSpikes() {
        final Optional<Series> opt = finite(Metric.GRAD_NORM);
        if (opt.isEmpty()) {
            return;
        }
        final Series s = opt.get();
        final double[] v = s.values();
        final List<Integer> spikes = new ArrayList<>();
        final List<String> ev = new ArrayList<>();
        for (int i = GRAD_SPIKE_MIN_HISTORY; i < v.length; i++) {
            final double base = Stats.median(v, i - GRAD_SPIKE_LOOKBACK, i);
            if (base > 0 && v[i] > GRAD_SPIKE_FACTOR * base) {
                spikes.add(i);
                ev.add(s.key() + ": " + at(s, i) + " = " + fmt(v[i] / base) + " x the median " + fmt(base)
                    + " of the previous " + Math.min(i, GRAD_SPIKE_LOOKBACK) + " steps");
            }
        }
        if (spikes.isEmpty()) {
            return;
        }
        boolean near = false;
        for (final int i : spikes) {
            final long st = s.steps()[i];
            for (final Finding f : out) {
                if (f.severity() != Severity.INFO && f.overlaps(st - GRAD_SPIKE_NEAR, st + GRAD_SPIKE_NEAR)) {
                    near = true;
                }
            }
        }
        final boolean warn = near || spikes.size() > GRAD_SPIKE_MAX_ISOLATED;
        final long first = s.steps()[spikes.get(0)];
        final long last = s.steps()[spikes.get(spikes.size() - 1)];
        add("grad-norm-spike", warn ? Severity.WARNING : Severity.INFO,
            spikes.size() == 1 ? "grad_norm spike" : spikes.size() + " grad_norm spikes", first, last, ev, warn
                ? "The gradient norm jumped by more than " + fmt(GRAD_SPIKE_FACTOR) + "x its recent level "
                    + (near ? "next to other problems in this run (see the findings over the same steps): spikes like "
                        + "these are often where a collapse starts or how it shows. " : "repeatedly. ")
                    + "verl clips the gradient (actor.grad_clip, 1.0 by default), which bounds the step but not the "
                    + "direction. Look at the batches of these steps (outlier rewards, very long or empty responses, "
                    + "extreme ratios); lower the learning rate or tighten the clip if they recur."
                : "An isolated jump of the gradient norm that the run recovered from: usually one unusual batch "
                    + "(an outlier reward or a very long response). With gradient clipping (verl's actor.grad_clip) "
                    + "the update stayed bounded. Nothing to do unless spikes become frequent or line up with a drop "
                    + "in reward.");
    }

    // ---------------------------------------------------------------------------------------------------------

    private static Map<Long, Double> byStep(final Series s) {
        final Map<Long, Double> m = new HashMap<>();
        for (int i = 0; i < s.size(); i++) {
            m.put(s.steps()[i], s.values()[i]);
        }
        return m;
    }

    /** Early (first) or late (last) level: a median of the trend window on long series, the end value on short. */
    private static double ends(final double[] v, final boolean early) {
        if (v.length < MIN_TREND_STEPS) {
            return early ? v[0] : v[v.length - 1];
        }
        final int w = Stats.trendWindow(v.length);
        return early ? Stats.median(v, 0, w) : Stats.median(v, v.length - w, v.length);
    }

    private static boolean monotoneDown(final double[] v) {
        for (int i = 1; i < v.length; i++) {
            if (v[i] > v[i - 1]) {
                return false;
            }
        }
        return true;
    }

    static double min(final double[] v) {
        double m = Double.POSITIVE_INFINITY;
        for (final double x : v) {
            m = Math.min(m, x);
        }
        return m;
    }

    static double max(final double[] v) {
        double m = Double.NEGATIVE_INFINITY;
        for (final double x : v) {
            m = Math.max(m, x);
        }
        return m;
    }

    private static int argmax(final double[] v) {
        int a = 0;
        for (int i = 1; i < v.length; i++) {
            if (v[i] > v[a]) {
                a = i;
            }
        }
        return a;
    }

    private static int argmin(final double[] v) {
        int a = 0;
        for (int i = 1; i < v.length; i++) {
            if (v[i] < v[a]) {
                a = i;
            }
        }
        return a;
    }
}
