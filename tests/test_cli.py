"""The mldb command in all three modes, run as a real subprocess."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

MLDB = [sys.executable, "-m", "mldb.cli"]


def run(args, stdin=None):
    return subprocess.run(MLDB + args, input=stdin, capture_output=True, text=True, timeout=120)


def test_command_mode_prints_aligned_table_and_persists(db_path):
    result = run([db_path, "-c", "CREATE TABLE t AS SELECT range AS n, 'item ' || range AS label FROM range(3); "
                                 "SELECT * FROM t ORDER BY n"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "CREATE" in lines[0]
    header = next(line for line in lines if "label" in line)
    assert header.index("label") > header.index("n")
    assert any("item 2" in line for line in lines)
    assert "(3 rows)" in result.stdout
    again = run([db_path, "-c", "SELECT count(*) AS c FROM t"])
    assert "3" in again.stdout


def test_command_mode_error_exit_status_and_one_line_message(db_path):
    result = run([db_path, "-c", "SELECT * FROM missing"])
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "ProgrammingError" in result.stderr and "missing" in result.stderr


def test_script_on_stdin_runs_in_order_and_stops_at_first_error(db_path):
    script = ("CREATE TABLE s(a INTEGER);\nINSERT INTO s VALUES (1), (2);\nSELECT sum(a) AS total FROM s;\n"
              "SELECT broken FROM s;\nINSERT INTO s VALUES (100);\n")
    result = run([db_path], stdin=script)
    assert result.returncode == 1
    assert "INSERT 2" in result.stdout and "total" in result.stdout
    assert "broken" in result.stderr
    check = run([db_path, "-c", "SELECT sum(a) FROM s"])
    assert "3" in check.stdout and "103" not in check.stdout


def test_timing_flag(db_path):
    result = run([db_path, "--timing", "-c", "SELECT 1"])
    assert result.returncode == 0 and "Time:" in result.stdout


def test_default_database_is_in_memory(tmp_path):
    result = subprocess.run(MLDB + ["-c", "CREATE TABLE t(a INTEGER); SELECT count(*) FROM t"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and list(tmp_path.iterdir()) == []


def test_interactive_shell_multiline_and_errors(db_path, tmp_path):
    leader, follower = pty.openpty()
    env = dict(os.environ, HOME=str(tmp_path))
    process = subprocess.Popen(MLDB + [db_path], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    try:
        output = _read_until(leader, "mldb> ")
        os.write(leader, b"SELECT 40\n")
        output += _read_until(leader, "...> ")
        os.write(leader, b"  + 2 AS answer;\n")
        output += _read_until(leader, "mldb> ")
        os.write(leader, b"SELECT * FROM nowhere;\n")
        output += _read_until(leader, "mldb> ")
        os.write(leader, b".quit\n")
        process.wait(timeout=60)
    finally:
        process.kill()
        os.close(leader)
    assert "answer" in output and "42" in output
    assert "nowhere" in output and "ProgrammingError" in output
    assert process.returncode == 0
    assert (tmp_path / ".mldb_history").exists()


def _read_until(fd, marker: str, timeout: float = 60.0) -> str:
    data, deadline = b"", time.monotonic() + timeout
    while marker.encode() not in data:
        if time.monotonic() > deadline:
            pytest.fail(f"no {marker!r} in shell output: {data.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            data += os.read(fd, 4096)
    return data.decode(errors="replace")
