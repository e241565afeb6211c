"""TLS for ``mldb serve --tls-cert FILE --tls-key FILE``: the server's ``ssl.SSLContext``.

A client asks with an SSLRequest before its startup packet; the server answers ``S`` and
the handshake wraps the socket (``Client._startup``), or ``N`` when TLS is not configured.
TLS 1.2 is the least version accepted. Clients are not asked for certificates (the
password, if any, authenticates them); ``--require-tls`` (``--tls-required``) refuses clients that do not
ask for TLS.
"""

from __future__ import annotations

import ssl


class TLSSetupError(Exception):
    """The certificate or key cannot be used (the message says which and why)."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (cert, key):  # (load_cert_chain's own error does not say which file)
        try:
            open(path, "rb").close()
        except OSError as error:
            raise TLSSetupError(f"cannot read {path}: {error.strerror}") from None
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise TLSSetupError(f"the certificate {cert} or the key {key} is not valid PEM, or they do not match "
                            f"({error.reason or error})") from None
    return context
