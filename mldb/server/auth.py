"""Password authentication: SCRAM-SHA-256 (RFC 5802/7677), MD5 and cleartext for old clients.

The server keeps only SCRAM's derived keys and the password for MD5/cleartext in
memory; nothing here logs or returns the password. Each method is a small exchange:
``authenticate(method, secret, user, send, receive)`` sends the backend's requests with
``send(bytes)`` and reads each password-message body with ``receive() -> bytes``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from mldb.server import protocol

METHODS = ("scram-sha-256", "md5", "password")
_ITERATIONS = 4096


class Secret:
    """The server's password, with SCRAM's salted keys computed once at start-up."""

    def __init__(self, password: str):
        self._password = password
        self.salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, _ITERATIONS)
        self.stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        self.server_key = _hmac(salted, b"Server Key")

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(password.encode(), self._password.encode())

    def md5(self, user: str, salt: bytes) -> str:
        inner = hashlib.md5(self._password.encode() + user.encode()).hexdigest()
        return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()

    def __repr__(self) -> str:
        return "Secret(***)"


class AuthenticationFailed(Exception):
    """Wrong password or a broken exchange (SQLSTATE 28P01)."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def authenticate(method: str, secret: Secret, user: str, send, receive) -> None:
    """Run one exchange; raises AuthenticationFailed unless the client proved the password."""
    if method == "password":
        send(protocol.authentication(3))
        if not secret.matches(_cstring(receive())):
            raise AuthenticationFailed()
    elif method == "md5":
        salt = os.urandom(4)
        send(protocol.authentication(5, salt))
        if not hmac.compare_digest(_cstring(receive()), secret.md5(user, salt)):
            raise AuthenticationFailed()
    else:
        _scram(secret, send, receive)


def _cstring(body: bytes) -> str:
    return body.split(b"\0", 1)[0].decode(errors="replace")


def _scram(secret: Secret, send, receive) -> None:
    send(protocol.authentication(10, b"SCRAM-SHA-256\0\0"))
    initial = protocol.Payload(receive())
    if initial.cstring() != "SCRAM-SHA-256":
        raise AuthenticationFailed()
    client_first = initial.bytes(initial.int32()).decode()
    header, _, client_bare = _split_gs2(client_first)
    client_nonce = _attributes(client_bare).get("r")
    if not client_nonce:
        raise AuthenticationFailed()
    nonce = client_nonce + base64.b64encode(os.urandom(18)).decode()
    server_first = f"r={nonce},s={base64.b64encode(secret.salt).decode()},i={_ITERATIONS}"
    send(protocol.authentication(11, server_first.encode()))
    client_final = receive().decode()
    without_proof, _, proof = client_final.rpartition(",p=")
    final = _attributes(without_proof)
    if final.get("r") != nonce or final.get("c") != base64.b64encode(header.encode()).decode():
        raise AuthenticationFailed()
    message = f"{client_bare},{server_first},{without_proof}".encode()
    signature = _hmac(secret.stored_key, message)
    try:
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
    except ValueError:
        raise AuthenticationFailed() from None
    if len(client_key) != 32 or not hmac.compare_digest(hashlib.sha256(client_key).digest(), secret.stored_key):
        raise AuthenticationFailed()
    server_signature = base64.b64encode(_hmac(secret.server_key, message)).decode()
    send(protocol.authentication(12, f"v={server_signature}".encode()))


def _split_gs2(client_first: str) -> tuple[str, str, str]:
    """``n,,n=user,r=nonce`` -> ("n,,", "", "n=user,r=nonce"); channel binding is not offered."""
    parts = client_first.split(",", 2)
    if len(parts) != 3 or parts[0] not in ("n", "y"):
        raise AuthenticationFailed()
    return f"{parts[0]},{parts[1]},", "", parts[2]


def _attributes(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)
