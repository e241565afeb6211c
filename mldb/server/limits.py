"""How many connections ``mldb serve`` holds, and for how long before they authenticate.

As PostgreSQL (``max_connections``, ``superuser_reserved_connections``, a role's
``CONNECTION LIMIT``, ``authentication_timeout``, the ``auth_delay`` module), so that
clients who do not know the password cannot hold the server:

- every connection takes one of ``max_connections`` slots from the moment it is accepted,
  before it authenticates;
- connections that have not authenticated yet may hold at most ``max_connections -
  reserved_connections`` slots. A connection that arrives when they hold them all takes the
  place of the oldest of them (which is closed), so a flood of connections that never
  authenticate does not lock out a client that does;
- at most ``max_authenticating_per_address`` connections from one address may be
  authenticating at once (more are refused), which also bounds how many passwords one
  address can try: that many per ``auth_delay``;
- a connection must finish TLS, start-up and authentication within ``auth_timeout``
  seconds, and a wrong password is answered only after ``auth_delay`` seconds;
- ``max_connections_per_user`` authenticated connections per user name (0: no limit).

Refusals are SQLSTATE 53300 (too_many_connections) with PostgreSQL's wording where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

TOO_MANY_CLIENTS = "sorry, too many clients already"


@dataclass(frozen=True)
class Limits:
    max_connections: int = 100
    reserved_connections: int = 3
    max_connections_per_user: int = 0  # 0: no limit
    max_authenticating_per_address: int = 20
    auth_timeout: float = 10.0  # seconds
    auth_delay: float = 1.0  # seconds before a failed authentication is answered

    def __post_init__(self):
        if self.max_connections < 1:
            raise ValueError(f"max connections must be at least 1, found {self.max_connections}")
        if not 0 <= self.reserved_connections < self.max_connections:
            raise ValueError(f"reserved connections must be at least 0 and less than max connections "
                             f"({self.max_connections}), found {self.reserved_connections}")
        if self.max_connections_per_user < 0:
            raise ValueError(f"max connections per user must be 0 (no limit) or more, "
                             f"found {self.max_connections_per_user}")
        if self.max_authenticating_per_address < 1:
            raise ValueError(f"max authenticating connections per address must be at least 1, "
                             f"found {self.max_authenticating_per_address}")
        if not self.auth_timeout > 0:
            raise ValueError(f"auth timeout must be more than 0 seconds, found {self.auth_timeout}")
        if not 0 <= self.auth_delay < self.auth_timeout:
            raise ValueError(f"auth delay must be at least 0 and less than the auth timeout "
                             f"({self.auth_timeout} s), found {self.auth_delay}")

    def admit(self, slots: int, authenticating: int, from_address: int) -> str:
        """What happens to a new connection: ``"admit"``, ``"replace"`` (admit it and close the oldest
        authenticating connection to free a slot) or ``"refuse"`` (see ``refusal``). ``slots``:
        connections holding a slot; ``authenticating``: those of them not authenticated yet;
        ``from_address``: connections authenticating from the new one's address."""
        if from_address >= self.max_authenticating_per_address:
            return "refuse"
        if slots < self.max_connections and authenticating < self.max_connections - self.reserved_connections:
            return "admit"
        return "replace" if authenticating else "refuse"

    def refusal(self, from_address: int, host: str) -> str:
        if from_address >= self.max_authenticating_per_address:
            return (f"too many connections from {host} are authenticating at once "
                    f"(at most {self.max_authenticating_per_address})")
        return TOO_MANY_CLIENTS


def too_many_for_user(user: str) -> str:
    return f'too many connections for role "{user}"'
