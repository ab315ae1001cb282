package io.rlvec.cli.golden;

/**
 * The documented reasons why a verl golden value may differ from the engine's without failing (design.md,
 * numerics contract): in each, verl yields NaN/Inf where the engine's contract gives a finite value. A deviation
 * is accepted only when its precondition holds for the case and the engine's value satisfies the contract
 * stated here; otherwise the tensor fails. Every deviation is printed and counted, never passed silently.
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
        "gradient exactly 0 at masked positions");

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
     * @return whether this reason explains a non-finite verl value at that element.
     */
    boolean applies(final CaseFacts facts, final CaseOutputs.Output output, final int index) {
        return switch (this) {
            case NO_VALID_TOKEN -> facts.validTokens() == 0;
            case MASKED_NONFINITE_SEQ_MEAN -> facts.maskedNonFinite() && !output.tokenAligned();
            case MASKED_NONFINITE_GRADIENT -> facts.maskedNonFinite() && output.tokenAligned()
                && output.mask()[index] == 0f;
        };
    }

    /** @return whether the engine's value {@code a} satisfies this reason's contract. */
    boolean contractHolds(final float a) {
        return switch (this) {
            case NO_VALID_TOKEN, MASKED_NONFINITE_GRADIENT -> a == 0f;
            case MASKED_NONFINITE_SEQ_MEAN -> Float.isFinite(a);
        };
    }
}
