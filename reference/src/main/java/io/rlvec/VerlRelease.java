package io.rlvec;

/**
 * The verl release whose semantics a computation follows, where verl changed them between releases (the
 * aggregation modes, the value loss's denominators, some advantage estimators' edge cases). Each release is the
 * verl commit that the golden cases of that release were computed with.
 */
public enum VerlRelease {
    /** verl at commit {@code b178a3cd} (2026-01-29). */
    V2026_01("2026-01", "b178a3cd56f58b2d502255daba591e92833930a7"),
    /** verl at commit {@code 1dda039b} (2026-08-22); the default. */
    V2026_08("2026-08", "1dda039b9c6311889a9c9a26040677e1254814f9");

    /** The release a specification follows when none is named. */
    public static final VerlRelease DEFAULT = V2026_08;

    private final String label;
    private final String commit;

    VerlRelease(final String label, final String commit) {
        this.label = label;
        this.commit = commit;
    }

    /** @return the release's name as a spec key value ({@code "2026-01"}, {@code "2026-08"}). */
    public String label() {
        return label;
    }

    /** @return the full verl commit hash. */
    public String commit() {
        return commit;
    }

    /**
     * @param name a release label ({@code "2026-08"}) or a verl commit hash, full or abbreviated (at least 7 hex
     *             digits).
     * @return the release.
     * @throws IllegalArgumentException naming the known releases.
     */
    public static VerlRelease fromVerl(final String name) {
        if (name != null) {
            for (final VerlRelease r : values()) {
                if (r.label.equals(name) || (name.length() >= 7 && r.commit.startsWith(name.toLowerCase()))) {
                    return r;
                }
            }
        }
        throw new IllegalArgumentException("verl_semantics must be one of 2026-01 (verl b178a3cd), 2026-08 (verl "
            + "1dda039b), got '" + name + "'");
    }
}
