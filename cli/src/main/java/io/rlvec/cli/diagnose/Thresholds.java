package io.rlvec.cli.diagnose;

import java.util.List;

/**
 * Every threshold the rules use, in one place; {@link #TABLE} lists them for {@code diagnose --rules} and
 * docs/diagnose.md (a test keeps the two in step).
 *
 * <p>Trends compare the median of the first {@code w} logged values ("early") with the median of the last
 * {@code w} ("late"), {@code w} = clamp(n / {@value #TREND_WINDOW_DIVISOR}, {@value #TREND_WINDOW_MIN},
 * {@value #TREND_WINDOW_MAX}). A change is significant when |late - early| exceeds {@value #TREND_Z} standard
 * errors of that difference, the per-step noise being estimated from the median absolute first difference
 * (robust to the trend itself and to single spikes).
 */
public final class Thresholds {
    private Thresholds() {
    }

    /** Runs with fewer logged steps get no trend rules (levels, NaN and spikes only). */
    public static final int MIN_TREND_STEPS = 10;
    /** w = n / this, clamped. */
    public static final int TREND_WINDOW_DIVISOR = 10;
    /** Smallest early/late window. */
    public static final int TREND_WINDOW_MIN = 3;
    /** Largest early/late window. */
    public static final int TREND_WINDOW_MAX = 20;
    /** Standard errors a change must exceed to count as a trend. */
    public static final double TREND_Z = 3.0;

    /** pg_loss rolling-median window (steps) with a critic, where the reading is about persistence. */
    public static final int PG_WINDOW_CRITIC = 15;
    /** pg_loss rolling-median window (steps) for normalised estimators, whose failures are fast. */
    public static final int PG_WINDOW_NORMALISED = 5;
    /** |rolling median of pg_loss| above this is "strong" (advantages are whitened: about 1 in std). */
    public static final double PG_STRONG = 0.1;
    /** Share of a window's steps that must have the median's sign for a strong window; the window's mean must
     *  also exceed TREND_Z standard errors (the run's per-step noise / sqrt(k)). */
    public static final double PG_SIGN_SHARE_WINDOW = 0.75;
    /** Consecutive strong windows needed for a finding, with a critic. */
    public static final int PG_MIN_RUN_CRITIC = 10;
    /** Consecutive strong windows needed for a finding, normalised estimators. */
    public static final int PG_MIN_RUN_NORMALISED = 3;
    /** Share of all steps with one sign for "persistently (weakly) one-signed". */
    public static final double PG_SIGN_SHARE_RUN = 0.7;

    /** Rolling median of A&gt;0 tokens' share with ratio &gt; 1 below which (and of A&lt;0's above 1 - it) the
     *  update moves against the advantages. */
    public static final double SPLIT_WRONG_WAY = 0.5;
    /** Consecutive steps the split must read "wrong way" for a finding. */
    public static final int SPLIT_MIN_STEPS = 5;

    /** Rolling median of pg_clipfrac above this: updates leave the trust region too often. */
    public static final double CLIPFRAC_HIGH = 0.2;
    /** Rolling median of ppo_kl above this, as a fraction of clip_ratio^2 / 2 (0.02 at clip_ratio 0.2). */
    public static final double PPO_KL_HIGH_OF_CLIP = 1.0;
    /** Rolling median of pg_clipfrac_lower (dual clip) above this. */
    public static final double CLIPFRAC_LOWER_HIGH = 0.01;
    /** Window (steps) of the clipping rolling medians. */
    public static final int CLIP_WINDOW = 5;
    /** |ppo_kl| below this with pg_clipfrac == 0 counts as "no policy movement". */
    public static final double ZERO_PPO_KL = 1e-6;
    /** Consecutive steps of no movement for a finding. */
    public static final int ZERO_MIN_STEPS = 20;

    /** Entropy (nats/token) below this is collapsed. */
    public static final double ENTROPY_FLOOR = 0.01;
    /** Entropy below this is low (little exploration left). */
    public static final double ENTROPY_LOW = 0.05;
    /** Collapse also needs late &lt; early * this. */
    public static final double ENTROPY_COLLAPSE_RATIO = 0.1;
    /** A significant fall to late &lt; early * this is reported as a decline. */
    public static final double ENTROPY_DECLINE_RATIO = 0.5;
    /** A significant rise to late &gt; early * this is an explosion. */
    public static final double ENTROPY_EXPLOSION_RATIO = 2.0;

    /** A significant rise of the KL to the reference ending at or above this (nats/token) is a warning. */
    public static final double KL_WARN = 0.5;
    /** ... at or above this, critical. */
    public static final double KL_CRITICAL = 2.0;

    /** Reward at most this fraction of its run range above its run minimum, with no spread, is at its floor. */
    public static final double REWARD_FLOOR_FRACTION = 0.05;
    /** Steps needed before a flat reward is reported as a plateau. */
    public static final int PLATEAU_MIN_STEPS = 50;
    /** A reward component (TRL rewards/*) falling by this fraction of its first value while the total does not
     *  fall: traded away. */
    public static final double COMPONENT_FALL = 0.3;
    /** Steps needed for the component rule. */
    public static final int COMPONENT_MIN_STEPS = 3;

    /** A significant fall of the mean response length to late &lt; early * this. */
    public static final double LENGTH_COLLAPSE_RATIO = 0.5;
    /** Mean response length (tokens) at or below this is degenerate. */
    public static final double LENGTH_DEGENERATE = 5.0;
    /** Rolling median of response_length/clip_ratio at or above this: responses hit the maximum. */
    public static final double LENGTH_CLIP_HIGH = 0.1;
    /** Without a clip ratio: mean length at or above this fraction of the maximum length (the most common
     *  response_length/max) hits the maximum. */
    public static final double LENGTH_NEAR_MAX = 0.95;
    /** Window (steps) of the length rolling medians. */
    public static final int LENGTH_WINDOW = 5;
    /** Consecutive flagged steps for a length-at-maximum finding. */
    public static final int LENGTH_MIN_STEPS = 3;

    /** grad_norm above this times the median of the previous steps is a spike. */
    public static final double GRAD_SPIKE_FACTOR = 10.0;
    /** Previous steps whose median a grad_norm is compared with. */
    public static final int GRAD_SPIKE_LOOKBACK = 10;
    /** Previous steps needed before spikes are looked for. */
    public static final int GRAD_SPIKE_MIN_HISTORY = 3;
    /** More spikes than this in a run is a warning (fewer, isolated ones are an INFO). */
    public static final int GRAD_SPIKE_MAX_ISOLATED = 2;
    /** A spike within this many steps of a WARNING or CRITICAL finding's steps is a warning. */
    public static final int GRAD_SPIKE_NEAR = 3;

    /** One row of the rules table. */
    public record Row(String rule, String name, String value, String meaning) {
    }

    /** The rules table, in the order the docs list it. */
    public static final List<Row> TABLE = List.of(
        new Row("(trends)", "MIN_TREND_STEPS", num(MIN_TREND_STEPS), "fewer logged steps: no trend rules"),
        new Row("(trends)", "TREND_WINDOW", "n/" + TREND_WINDOW_DIVISOR + " in [" + TREND_WINDOW_MIN + ", "
            + TREND_WINDOW_MAX + "]", "early and late windows whose medians are compared"),
        new Row("(trends)", "TREND_Z", num(TREND_Z), "standard errors a change must exceed"),
        new Row("nan-inf", "-", "any", "a NaN or Inf in any logged metric is CRITICAL"),
        new Row("pg-loss-sign", "PG_STRONG", num(PG_STRONG), "abs(rolling median of pg_loss) that counts as strong"),
        new Row("pg-loss-sign", "PG_WINDOW_CRITIC / _NORMALISED", PG_WINDOW_CRITIC + " / " + PG_WINDOW_NORMALISED,
            "rolling-median window, steps"),
        new Row("pg-loss-sign", "PG_SIGN_SHARE_WINDOW", num(PG_SIGN_SHARE_WINDOW),
            "share of a window's steps with the median's sign; the window mean must also exceed TREND_Z x noise/sqrt(k)"),
        new Row("pg-loss-sign", "PG_MIN_RUN_CRITIC / _NORMALISED", PG_MIN_RUN_CRITIC + " / " + PG_MIN_RUN_NORMALISED,
            "consecutive strong windows for a WARNING"),
        new Row("pg-loss-sign", "PG_SIGN_SHARE_RUN", num(PG_SIGN_SHARE_RUN),
            "share of all steps with one sign for a persistent-sign INFO"),
        new Row("pg-loss-split", "SPLIT_WRONG_WAY", num(SPLIT_WRONG_WAY),
            "A>0 share with ratio>1 below it and A<0 share above 1 - it: update against the advantages"),
        new Row("pg-loss-split", "SPLIT_MIN_STEPS", num(SPLIT_MIN_STEPS), "consecutive steps for a WARNING"),
        new Row("clipping", "CLIPFRAC_HIGH", num(CLIPFRAC_HIGH), "rolling median of pg_clipfrac: WARNING"),
        new Row("clipping", "PPO_KL_HIGH_OF_CLIP", num(PPO_KL_HIGH_OF_CLIP),
            "rolling median of ppo_kl above this x clip_ratio^2/2: WARNING"),
        new Row("clipping", "CLIPFRAC_LOWER_HIGH", num(CLIPFRAC_LOWER_HIGH),
            "rolling median of pg_clipfrac_lower (dual clip): WARNING"),
        new Row("clipping", "CLIP_WINDOW", num(CLIP_WINDOW), "rolling-median window, steps"),
        new Row("no-policy-movement", "ZERO_PPO_KL", num(ZERO_PPO_KL), "abs(ppo_kl) below it with pg_clipfrac == 0"),
        new Row("no-policy-movement", "ZERO_MIN_STEPS", num(ZERO_MIN_STEPS), "consecutive such steps: WARNING"),
        new Row("entropy", "ENTROPY_FLOOR", num(ENTROPY_FLOOR), "nats/token: collapsed (CRITICAL)"),
        new Row("entropy", "ENTROPY_COLLAPSE_RATIO", num(ENTROPY_COLLAPSE_RATIO),
            "collapse also needs late < early x this"),
        new Row("entropy", "ENTROPY_LOW", num(ENTROPY_LOW),
            "low: a fall ending below it is a WARNING; low from the start an INFO"),
        new Row("entropy", "ENTROPY_DECLINE_RATIO", num(ENTROPY_DECLINE_RATIO),
            "significant fall to late < early x this: INFO (decline)"),
        new Row("entropy", "ENTROPY_EXPLOSION_RATIO", num(ENTROPY_EXPLOSION_RATIO),
            "significant rise to late > early x this: WARNING"),
        new Row("kl-drift", "KL_WARN", num(KL_WARN), "significant rise ending at or above: WARNING (below: INFO)"),
        new Row("kl-drift", "KL_CRITICAL", num(KL_CRITICAL), "significant rise ending at or above: CRITICAL"),
        new Row("reward", "REWARD_FLOOR_FRACTION", num(REWARD_FLOOR_FRACTION),
            "significant fall ending this close to the run minimum, no spread left: CRITICAL (else WARNING)"),
        new Row("reward", "PLATEAU_MIN_STEPS", num(PLATEAU_MIN_STEPS), "steps before a flat reward is a plateau (INFO)"),
        new Row("reward-components", "COMPONENT_FALL", num(COMPONENT_FALL),
            "a rewards/* component falling this fraction while the total does not: WARNING"),
        new Row("reward-components", "COMPONENT_MIN_STEPS", num(COMPONENT_MIN_STEPS), "steps needed"),
        new Row("response-length", "LENGTH_COLLAPSE_RATIO", num(LENGTH_COLLAPSE_RATIO),
            "significant fall to late < early x this: WARNING"),
        new Row("response-length", "LENGTH_DEGENERATE", num(LENGTH_DEGENERATE), "tokens: CRITICAL"),
        new Row("response-length", "LENGTH_CLIP_HIGH", num(LENGTH_CLIP_HIGH),
            "rolling median of response_length/clip_ratio: WARNING"),
        new Row("response-length", "LENGTH_NEAR_MAX", num(LENGTH_NEAR_MAX),
            "without a clip ratio: mean / max length: WARNING"),
        new Row("grad-norm-spike", "GRAD_SPIKE_FACTOR", num(GRAD_SPIKE_FACTOR),
            "x median of the previous GRAD_SPIKE_LOOKBACK steps"),
        new Row("grad-norm-spike", "GRAD_SPIKE_LOOKBACK", num(GRAD_SPIKE_LOOKBACK), "steps"),
        new Row("grad-norm-spike", "GRAD_SPIKE_MAX_ISOLATED", num(GRAD_SPIKE_MAX_ISOLATED),
            "more spikes than this is a WARNING (else INFO)"),
        new Row("grad-norm-spike", "GRAD_SPIKE_NEAR", num(GRAD_SPIKE_NEAR),
            "steps: a spike this close to a WARNING or CRITICAL finding is a WARNING"),
        new Row("short-run", "MIN_TREND_STEPS", num(MIN_TREND_STEPS), "fewer steps: an INFO saying so"));

    private static String num(final double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e6 ? Long.toString((long) v) : Double.toString(v);
    }
}
