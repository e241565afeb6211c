#!/usr/bin/env bash
# SQLAlchemy's dialect compliance suite against mldb, one command:
#   tests/sqla_suite/run.sh inprocess   # the mldb:// dialect on a database file
#   tests/sqla_suite/run.sh serve       # stock postgresql+psycopg against a real `mldb serve`
# Extra arguments go to pytest (e.g. -k ReturningTest). Prints pytest's summary line last.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode="${1:-inprocess}"; shift || true
work="$(mktemp -d)"
trap 'if [[ -n "${server:-}" ]]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
py="${PYTHON:-python}"  # the interpreter with mldb and SQLAlchemy (the test passes its own)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PLOOMBER_STATS_ENABLED=false
"$py" - "$work/suite.db" <<'PY'
import sys, mldb
with mldb.connect(sys.argv[1]) as con:  # the schemas the suite's cross-schema tests use
    con.execute("CREATE SCHEMA test_schema")
    con.execute("CREATE SCHEMA test_schema_2")
PY
if [[ "$mode" == serve ]]; then
    "$py" -m mldb.server serve "$work/suite.db" --port 0 > "$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 300); do grep -q " on 127" "$work/server.log" && break; sleep 0.1; done
    port="$(grep -o '127.0.0.1:[0-9]*' "$work/server.log" | head -1 | cut -d: -f2)"
    uri="postgresql+psycopg://suite@127.0.0.1:$port/suite"
else
    uri="mldb:///$work/suite.db"
fi
cd "$here"
"$py" -m pytest -p plugin -c setup.cfg --rootdir . suite.py -n 0 -q -p no:cacheprovider --dburi "$uri" "$@"
