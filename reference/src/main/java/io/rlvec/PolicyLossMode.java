package io.rlvec;

/** verl's {@code policy_loss.loss_mode}: which registered policy-loss function to run. */
public enum PolicyLossMode {
    /** {@code compute_policy_loss_vanilla}: PPO clip with asymmetric and dual clip, optional IS weights. */
    VANILLA("vanilla");

    private final String verlName;

    PolicyLossMode(final String verlName) {
        this.verlName = verlName;
    }

    /** @return verl's registry name. */
    public String verlName() {
        return verlName;
    }

    /**
     * @param name verl's registry name.
     * @return the mode.
     * @throws IllegalArgumentException naming the modes this version provides.
     */
    public static PolicyLossMode fromVerl(final String name) {
        for (final PolicyLossMode m : values()) {
            if (m.verlName.equals(name)) {
                return m;
            }
        }
        final StringBuilder sb = new StringBuilder();
        for (final PolicyLossMode m : values()) {
            sb.append(sb.length() == 0 ? "" : ", ").append(m.verlName);
        }
        throw new IllegalArgumentException("policy_loss.loss_mode must be one of [" + sb + "], got '" + name + "'");
    }
}
