"""TLS for ``mldb serve --tls-cert/--tls-key`` with psql and psycopg (a self-signed certificate
made here with the openssl CLI), ``--require-tls`` (alias ``--tls-required``), SSLRequest/GSSENCRequest
answers, a certificate that cannot be used, and the warning for passwords that may travel in clear."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys

import psycopg
import pytest
from conftest_server import ROOT, start_server

PSQL, OPENSSL = shutil.which("psql"), shutil.which("openssl")
SSL_REQUEST, GSSENC_REQUEST = struct.pack("!ii", 8, 80877103), struct.pack("!ii", 8, 80877104)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 / localhost and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certificate):
    cert, key = certificate
    served = start_server(tmp_path_factory.mktemp("tls_served"), "--tls-cert", str(cert), "--tls-key", str(key),
                          "--password", "s3cret")
    yield served
    served.stop()


def psql(dsn: str, *commands: str) -> subprocess.CompletedProcess:
    args = [PSQL, dsn, "-X", "-A", "-t"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "30", "PGPASSWORD": "s3cret"})


def test_psql_and_psycopg_connect_with_sslmode_require(tls_server, certificate, tmp_path):
    done = psql(tls_server.dsn(sslmode="require"), r"\conninfo", "SELECT 40 + 2")
    assert done.returncode == 0, done.stderr
    assert "SSL connection (protocol: TLSv1." in done.stdout and "42" in done.stdout
    # the served certificate is the one given: a client that verifies it against that file accepts it
    verified = psql(tls_server.dsn(sslmode="verify-full", sslrootcert=str(certificate[0])), r"\conninfo")
    assert verified.returncode == 0 and "SSL connection" in verified.stdout, verified.stderr
    with psycopg.connect(tls_server.dsn(sslmode="require", password="s3cret"), autocommit=True) as con:
        assert con.info.pgconn.ssl_in_use
        con.execute("CREATE OR REPLACE TABLE over_tls AS SELECT i, 'row ' || i AS s FROM range(20000) t(i)")
        with con.cursor().copy("COPY over_tls TO STDOUT") as copy:  # many messages through the TLS socket
            data = b"".join(bytes(chunk) for chunk in copy)
        con.execute("CREATE OR REPLACE TABLE back_tls AS FROM over_tls LIMIT 0")
        with con.cursor().copy("COPY back_tls FROM STDIN") as copy:
            copy.write(data)
        assert con.execute("SELECT count(*) FROM (FROM over_tls EXCEPT FROM back_tls)").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM back_tls").fetchone() == (20000,)
    plain = psql(tls_server.dsn(sslmode="disable"), r"\conninfo")  # TLS is the client's choice by default
    assert plain.returncode == 0 and "SSL connection" not in plain.stdout


def test_without_tls_options_sslrequest_gets_n(tmp_path):
    served = start_server(tmp_path)
    try:
        refused = psql(served.dsn(sslmode="require"), "SELECT 1")
        assert refused.returncode != 0 and "does not support SSL" in refused.stderr
        with psycopg.connect(served.dsn(sslmode="prefer"), autocommit=True) as con:
            assert not con.info.pgconn.ssl_in_use and con.execute("SELECT 1").fetchone() == (1,)
        for request in (SSL_REQUEST, GSSENC_REQUEST):
            with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
                sock.sendall(request)
                assert sock.recv(1) == b"N"
    finally:
        served.stop()


def test_gssencrequest_then_sslrequest_then_tls(tls_server):
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as sock:
        sock.sendall(GSSENC_REQUEST)
        assert sock.recv(1) == b"N"
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(sock) as tls:
            params = b"user\0tester\0database\0shop\0\0"
            tls.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
            assert tls.recv(1) == b"R"  # the password request comes encrypted


def test_bytes_sent_before_the_handshake_are_not_read_as_encrypted(tls_server):
    """An SSLRequest followed at once by a plaintext startup packet (the injection of CVE-2021-23214):
    those bytes reach the TLS handshake as garbage, so the connection ends without a session."""
    params = b"user\0tester\0database\0shop\0\0"
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as sock:
        sock.sendall(SSL_REQUEST + struct.pack("!ii", 8 + len(params), 196608) + params)
        assert sock.recv(1) == b"S"
        rest = b""
        try:
            while chunk := sock.recv(4096):
                rest += chunk
        except ConnectionResetError:
            pass
        assert not rest.startswith(b"R")  # no authentication request in the clear
    with psycopg.connect(tls_server.dsn(sslmode="require", password="s3cret")) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)  # the server goes on


@pytest.mark.parametrize("flag", ["--require-tls", "--tls-required"])
def test_tls_required_refuses_plain_clients(tmp_path, certificate, flag):
    cert, key = certificate
    served = start_server(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), flag)
    try:
        assert "TLS required" in served.log
        with pytest.raises(psycopg.OperationalError, match="only TLS connections") as refused:
            psycopg.connect(served.dsn(sslmode="disable"))
        assert "28000" in str(refused.value.sqlstate or "28000")
        with psycopg.connect(served.dsn(sslmode="require"), autocommit=True) as con:
            assert con.info.pgconn.ssl_in_use and con.execute("SELECT 1").fetchone() == (1,)
            assert served.stop() == 0  # SIGTERM with a TLS client connected: a clean exit
            with pytest.raises(psycopg.OperationalError):
                con.execute("SELECT 1")
    finally:
        served.stop()


@pytest.mark.parametrize("case", ["missing cert", "unreadable key", "garbage cert", "key without cert"])
def test_unusable_certificate_stops_the_server_with_a_clear_error(tmp_path, certificate, case):
    cert, key = certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    args = {"missing cert": ["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(key)],
            "unreadable key": ["--tls-cert", str(cert), "--tls-key", str(tmp_path)],
            "garbage cert": ["--tls-cert", str(garbage), "--tls-key", str(key)],
            "key without cert": ["--tls-key", str(key)]}[case]
    expected = {"missing cert": "none.pem: No such file", "unreadable key": "Is a directory",
                "garbage cert": "not valid PEM", "key without cert": "go together"}[case]
    done = subprocess.run([sys.executable, "-m", "mldb.server", "serve", str(tmp_path / "x.db"), "--port", "0", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    assert expected in done.stderr
    assert not (tmp_path / "x.db").exists()  # refused before the database was opened


@pytest.mark.parametrize("method, exposed", [
    ("password", "the password itself travels in clear text"),
    ("md5", "md5 sends a hash of the password that an eavesdropper can attack offline (md5 is weak)"),
    ("scram-sha-256", "scram-sha-256 does not reveal the password, but queries and results travel unencrypted"),
])
def test_password_on_a_non_local_address_without_tls_warns(tmp_path, method, exposed):
    served = start_server(tmp_path, "--host", "0.0.0.0", "--password", "pw", "--auth-method", method)
    assert served.stop() == 0
    warning = re.search(r"mldb serve: warning: on 0\.0\.0\.0 without TLS, (.*)", served.log).group(1)
    assert warning.startswith(exposed) and warning.endswith("; give --tls-cert/--tls-key and --require-tls")


def test_clear_text_warning_only_where_tls_may_be_skipped(tmp_path, certificate):
    cert, key = (str(path) for path in certificate)
    optional = start_server(tmp_path, "--host", "0.0.0.0", "--password", "pw", "--tls-cert", cert, "--tls-key", key)
    assert optional.stop() == 0
    assert "warning: for clients that do not ask for TLS, scram-sha-256 does not reveal" in optional.log
    for args in (["--host", "0.0.0.0", "--password", "pw", "--tls-cert", cert, "--tls-key", key, "--require-tls"],
                 ["--password", "pw", "--auth-method", "password"]):  # TLS required; a local address
        served = start_server(tmp_path, *args)
        assert served.stop() == 0
        assert "mldb serve: warning" not in served.log
