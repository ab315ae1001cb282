# Sourced by ./mvnw, ./rlvec and .ci/run: puts a JDK 25+ in JAVA_HOME or stops with a clear message.
# Order: $JAVA_HOME if it is 25 or newer, then /usr/lib/jvm/temurin-25-jdk-amd64.
rlvec_java_feature() {
  "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}
rlvec_find_jdk() {
  for cand in "${JAVA_HOME-}" /usr/lib/jvm/temurin-25-jdk-amd64; do
    [ -n "$cand" ] && [ -x "$cand/bin/java" ] || continue
    v=$(rlvec_java_feature "$cand")
    if [ -n "$v" ] && [ "$v" -ge 25 ]; then
      JAVA_HOME="$cand"; export JAVA_HOME; return 0
    fi
  done
  echo "RLVec needs JDK 25 or newer (jdk.incubator.vector, FFM). Looked at JAVA_HOME='${JAVA_HOME-}' and /usr/lib/jvm/temurin-25-jdk-amd64." >&2
  echo "Install Temurin 25 there, or point JAVA_HOME at a JDK 25." >&2
  return 1
}
rlvec_find_jdk || exit 1
