"""Failed authentications per peer address, bounded: a peer that keeps presenting keys that do
not work is refused a key lookup until it slows down.

Each peer host (the gRPC peer without its port: one client opens many connections) has a
budget of `burst` failures refilled at `per_second`. A peer with no budget left gets
RESOURCE_EXHAUSTED (`AUTH_FAILURES_RATE_LIMITED`, RetryInfo) *instead of a lookup* — but only
for keys the gateway does not already know to be good (see `gateway.auth`), so a valid
client behind the same address (NAT, a shared proxy) keeps being served. At most
`max_peers` peers are tracked; the least recently failing go first. Pure, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict

from magnetar.errors import ResourceExhausted


def peer_host(peer: str | None) -> str:
    """``ipv4:10.0.0.7:53211`` → ``ipv4:10.0.0.7``; ``ipv6:[::1]:5`` → ``ipv6:[::1]``."""
    if not peer:
        return "unknown"
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit():
            return host
    return peer


class AuthFailureLimiter:
    def __init__(self, per_second: float, burst: int, max_peers: int = 10_000) -> None:
        if per_second <= 0 or burst <= 0 or max_peers <= 0:
            raise ValueError("per_second, burst and max_peers must be positive")
        self.per_second = per_second
        self.burst = burst
        self.max_peers = max_peers
        # peer → (tokens, updated at), least recently failing first.
        self._peers: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, peer: str, now: float) -> float:
        entry = self._peers.get(peer)
        if entry is None:
            return float(self.burst)
        tokens, updated = entry
        return min(float(self.burst), tokens + (now - updated) * self.per_second)

    def check(self, peer: str, now: float) -> None:
        """ResourceExhausted if `peer` has used up its failures; returns otherwise."""
        tokens = self._tokens(peer, now)
        if tokens >= 1.0:
            return
        wait_s = (1.0 - tokens) / self.per_second
        raise ResourceExhausted(
            f"too many failed authentications from this address (at most {self.burst}, then "
            f"{self.per_second:g}/s); retry in {wait_s:.3f} s with a valid API key",
            retry_after_s=wait_s,
            reason="AUTH_FAILURES_RATE_LIMITED",
            metadata={
                "failures_per_second": f"{self.per_second:g}",
                "failures_burst": str(self.burst),
            },
        )

    def failed(self, peer: str, now: float) -> None:
        """Count one failed authentication of `peer`."""
        tokens = max(0.0, self._tokens(peer, now) - 1.0)
        self._peers[peer] = (tokens, now)
        self._peers.move_to_end(peer)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    def tracked(self) -> int:
        return len(self._peers)
