# Sourced by .ci/setup.sh: the real PostgreSQL clients the wire-server tests use (psql, the JDBC
# driver and a JDK), openssl (TLS tests) and the PostgreSQL 15 server the benchmark compares against. Idempotent, quiet.
_mldb_missing=()
command -v psql >/dev/null 2>&1 || _mldb_missing+=(postgresql-client)
[ -f /usr/share/java/postgresql.jar ] || _mldb_missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || _mldb_missing+=(default-jdk-headless)
command -v openssl >/dev/null 2>&1 || _mldb_missing+=(openssl)  # the TLS tests make a self-signed certificate
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || _mldb_missing+=(postgresql)
if [ ${#_mldb_missing[@]} -gt 0 ]; then
    _mldb_sudo=""; [ "$(id -u)" -eq 0 ] || _mldb_sudo="sudo"
    $_mldb_sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $_mldb_sudo apt-get install -y -qq --no-install-recommends "${_mldb_missing[@]}" >/dev/null
fi
unset _mldb_missing _mldb_sudo
