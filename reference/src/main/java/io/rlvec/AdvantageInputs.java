package io.rlvec;

/**
 * Per-sequence inputs of {@link Engine#advantages} besides the batch's token columns: verl's {@code index}
 * (the group id of each sequence, int64, in any order and not necessarily contiguous) and ReMax's
 * {@code reward_baselines} (float32, the greedy rollout's reward per sequence). Either may be null where the
 * estimator does not read it. Mutable and reusable: set the arrays, call, set others.
 */
public final class AdvantageInputs {
    private OffHeapArray index;
    private OffHeapArray rewardBaselines;
    private final java.util.Map<String, OffHeapArray> components = new java.util.LinkedHashMap<>();

    /** @return the group ids (I64, one per sequence), or null. */
    public OffHeapArray index() {
        return index;
    }

    /** Sets the group ids (I64, one per sequence). */
    public AdvantageInputs index(final OffHeapArray groupIds) {
        index = groupIds;
        return this;
    }

    /** @return ReMax's baseline rewards (F32, one per sequence), or null. */
    public OffHeapArray rewardBaselines() {
        return rewardBaselines;
    }

    /** Sets ReMax's baseline rewards (F32, one per sequence). */
    public AdvantageInputs rewardBaselines(final OffHeapArray baselines) {
        rewardBaselines = baselines;
        return this;
    }

    /**
     * Sets gdpo's reward component {@code key} (verl's {@code non_tensor_batch[key]}): F32, one value per
     * sequence (the component's score of that response).
     */
    public AdvantageInputs rewardComponent(final String key, final OffHeapArray values) {
        components.put(java.util.Objects.requireNonNull(key, "key"), values);
        return this;
    }

    /** @return gdpo's reward component {@code key}, or null. */
    public OffHeapArray rewardComponent(final String key) {
        return components.get(key);
    }

    /** @return the names of the reward components set. */
    public java.util.Set<String> rewardComponentKeys() {
        return java.util.Collections.unmodifiableSet(components.keySet());
    }

    /** Forgets every reward component. */
    public AdvantageInputs clearRewardComponents() {
        components.clear();
        return this;
    }
}
