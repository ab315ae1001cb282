package io.rlvec.cli.golden;

/**
 * The documented reasons why a verl golden value may differ from the engine's without failing (design.md,
 * numerics contract): in each, verl yields NaN/Inf where the engine's contract gives a finite value. A deviation
 * is accepted only for an element whose verl value is not finite, only for the outputs whose handler lists it,
 * only when its precondition holds for the case (and, where it is per element, for that element), and only when
 * the engine's value satisfies the contract stated here; otherwise the tensor fails. Every deviation is printed
 * and counted, never passed silently.
 *
 * <ul>
 * <li>{@link #NO_VALID_TOKEN}: aggregated losses (and their gradients) of a batch without a valid token.</li>
 * <li>{@link #MASKED_NONFINITE_SEQ_MEAN}: aggregated losses of the seq-mean modes with NaN/Inf at masked
 * positions.</li>
 * <li>{@link #MASKED_NONFINITE_GRADIENT}: gradients at masked positions holding NaN/Inf.</li>
 * <li>{@link #NEG_INF_LOGIT}: entropy and gradients w.r.t. the logits of rows holding a {@code -inf} logit (never
 * the log-probs, which verl computes finitely there and which must match).</li>
 * <li>{@link #TORCH_LESS_ACCURATE}: the one reason for a finite verl value outside tolerance: float32 PyTorch is
 * farther from a double-precision evaluation than the engine is (entropies, logit gradients and the harness's
 * sum of squared probabilities of the vocabulary pass).</li>
 * </ul>
 */
public enum Deviation {
    /**
     * The batch has no valid token: verl divides 0 by 0 (token-mean by the token count, seq-mean modes by the
     * sequence count) and returns NaN. Contract: the engine's loss (and any gradient) is exactly 0.
     */
    NO_VALID_TOKEN("no valid token in the batch: verl divides 0 by 0 and gets NaN",
        "loss and gradient exactly 0"),
    /**
     * A NaN/Inf sits at a masked position and verl's seq-mean modes compute {@code loss_mat * loss_mask}
     * ({@code NaN * 0 = NaN}), so it leaks into the aggregated loss. The engine never reads masked positions.
     * Contract: the engine's loss is finite.
     */
    MASKED_NONFINITE_SEQ_MEAN("a NaN/Inf at a masked position leaks through verl's seq-mean aggregation "
        + "(loss_mat * loss_mask, NaN * 0 = NaN)", "finite loss computed from valid tokens only"),
    /**
     * A NaN/Inf sits at a masked position and autograd multiplies a zero upstream gradient by it
     * ({@code 0 * NaN = NaN}), so verl's gradient at that masked position is NaN. Contract: the engine's gradient
     * at masked positions is exactly 0.
     */
    MASKED_NONFINITE_GRADIENT("autograd's 0 * NaN at a masked position holding NaN/Inf gives a NaN gradient there",
        "gradient exactly 0 at masked positions"),
    /**
     * A NaN/Inf sits at a masked position and verl's sequence-level modes sum it into the row's statistic
     * ({@code sum(x * mask)}: gspo's sequence log-ratio, geo_mean's sequence means), so every valid token of that
     * row gets verl's NaN, or the 0 gradient a NaN clamp gives. The engine never reads masked positions.
     * Precondition: the batch holds a masked non-finite input, the element is a valid token of a per-token output
     * whose handler lists this reason (gspo, geo_mean). Contract: the engine's value is finite. Unlike the other
     * reasons it also covers a finite verl value (the 0 gradient).
     */
    MASKED_NONFINITE_SEQUENCE("a NaN/Inf at a masked position poisons verl's per-sequence sum (sum(x * mask)) and "
        + "with it every valid token of the row", "finite value computed from the row's valid tokens only"),
    /**
     * verl leaves exp(log-ratio) unclamped (clip_cov, kl_cov, geo_mean's sequence ratio) or squares it (dro), which
     * overflows to Inf (or 0 * Inf = NaN) on finite inputs. The engine computes verl's expression wherever it is
     * finite and, at a token (or sequence) where it overflows, uses the log-ratio clamped to [-20, 20] as vanilla
     * does (TokenRule.overflowSafeRatio). Precondition: every valid input is finite and the handler lists this
     * reason (those four modes). Contract: the engine's value is finite.
     */
    UNCLAMPED_OVERFLOW("verl's unclamped exp (or square) of the log-ratio overflows on finite inputs",
        "finite value from the log-ratio clamped to [-20, 20] where verl's overflows"),
    /**
     * A logits row holds {@code -inf}: verl's {@code entropy_from_logits} computes {@code sum(softmax * logits)},
     * where the probability 0 of a {@code -inf} logit meets the logit itself ({@code 0 * -inf = NaN}), so the row's
     * entropy and, through autograd, its whole gradient w.r.t. the logits are NaN. The engine's contract
     * ({@code Engine.logProbs}) takes the limit {@code p log p -> 0}: such a logit has probability 0 and adds
     * nothing to the entropy. Precondition: the element belongs to a logits row holding {@code -inf}. Contract:
     * the engine's value is finite. Handlers list it for entropies and logit gradients only.
     */
    NEG_INF_LOGIT("a -inf logit in the row: verl's entropy computes 0 * -inf = NaN (entropy and the row's "
        + "gradient)", "finite value (p log p = 0 for a -inf logit)"),
    /**
     * verl's value is finite but outside tolerance, and float32 PyTorch is the less accurate of the two (design.md:
     * "a written reason where PyTorch itself is less accurate than the engine"): logits with a large common offset
     * (about 1000) lose precision in torch's {@code log_softmax}/{@code softmax} ({@code x - logsumexp(x)} is
     * rounded at the offset's magnitude, ulp 1.2e-4 at 1700), and a peaked row's entropy of order 1e-16 to 1e-22
     * rounds to exactly 0 in torch (relative error 1). Precondition (per element): the output carries the harness's
     * double-precision evaluation from the same float32 inputs ({@link CaseOutputs.Referee}); verl is farther from
     * it than the engine; and verl's error is within the float32 error budget the handler derived from the inputs'
     * float32 resolution (so a semantic difference, far beyond rounding, is never excused). Contract: the engine
     * is within the output's own tolerance of the double-precision value. It never applies to a non-finite verl
     * value.
     */
    TORCH_LESS_ACCURATE("float32 PyTorch is farther from the double-precision value than the engine, by no more "
        + "than float32 rounding of the inputs' magnitude allows (large logit offset, or an entropy that rounds to 0)",
        "within the output's tolerance of the double-precision value");

    private final String reason;
    private final String contract;

    Deviation(final String reason, final String contract) {
        this.reason = reason;
        this.contract = contract;
    }

    /** @return why verl's value is not finite. */
    public String reason() {
        return reason;
    }

    /** @return what the engine's value must satisfy instead. */
    public String contract() {
        return contract;
    }

    /**
     * @param facts  what the case's inputs are like.
     * @param output the engine's output.
     * @param index  the element whose verl value is not finite.
     * @return whether this reason explains a non-finite verl value at that element ({@link #TORCH_LESS_ACCURATE}
     *     never does: it is about finite values, see {@link #torchLessAccurate}).
     */
    boolean applies(final CaseFacts facts, final CaseOutputs.Output output, final int index) {
        return switch (this) {
            case NO_VALID_TOKEN -> facts.validTokens() == 0;
            case MASKED_NONFINITE_SEQ_MEAN -> facts.maskedNonFinite() && !output.tokenAligned();
            case MASKED_NONFINITE_GRADIENT -> facts.maskedNonFinite() && output.tokenAligned()
                && output.mask()[index] == 0f;
            case NEG_INF_LOGIT -> facts.negInfRowAt(output.values().length, index);
            case MASKED_NONFINITE_SEQUENCE -> facts.maskedNonFinite() && output.tokenAligned()
                && output.mask()[index] != 0f;
            case UNCLAMPED_OVERFLOW -> !facts.validNonFinite();
            case TORCH_LESS_ACCURATE -> false;
        };
    }

    /** @return whether the engine's value {@code a} satisfies this reason's contract. */
    boolean contractHolds(final float a) {
        return switch (this) {
            case NO_VALID_TOKEN, MASKED_NONFINITE_GRADIENT -> a == 0f;
            case MASKED_NONFINITE_SEQ_MEAN, NEG_INF_LOGIT, MASKED_NONFINITE_SEQUENCE, UNCLAMPED_OVERFLOW ->
                Float.isFinite(a);
            case TORCH_LESS_ACCURATE -> false;
        };
    }

    /**
     * {@link #TORCH_LESS_ACCURATE} for a finite verl value {@code e} outside tolerance.
     *
     * @return whether the output allows it, the precondition holds at {@code index} (verl farther from the
     *     double-precision value than the engine's {@code a}, and within the float32 budget of it) and the contract
     *     holds (the engine within tolerance of it).
     */
    static boolean torchLessAccurate(final CaseOutputs.Output output, final int index, final double e,
                                     final float a) {
        final CaseOutputs.Referee referee = output.referee();
        if (!output.allowed().contains(TORCH_LESS_ACCURATE) || referee == null) {
            return false;
        }
        final double x = referee.exactAt(index);
        final double engineOff = Math.abs(a - x);
        final double verlOff = Math.abs(e - x);
        return Double.isFinite(x) && verlOff > engineOff && verlOff <= referee.budgetAt(index)
            && output.tolerance().accepts(engineOff, x);
    }
}
