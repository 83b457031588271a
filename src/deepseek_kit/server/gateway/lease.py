"""Budget leases: one store hold covers many requests of a busy budgeted key.

Without them every request of a budgeted key costs the state store a write at admission (one
SQLite write transaction or one Redis round trip) before the call can go upstream; on the bench
machine that was about 280 µs of the gateway's 1.1 ms at a low request rate (docs/gateway.md,
Performance). A lease is an ordinary hold, made through the same atomic check as a per-request
hold, of a larger amount; this process's next requests of that key draw their worst case from it
in memory, and the lease is settled in one go (its hold removed, the exact cost of every draw added
to the spend) once it is closed and its last draw is done. Its successor is asked for after an
answer (`Leases.due`: past half its age, or down to a quarter), off the request path.

Why the overspend bound is unchanged: the store still sees every draw covered by a hold (the
lease's) and admits a lease only when spent + held + lease fits the budget, exactly as it admits a
per-request hold, so across processes the budget is never committed twice. What a lease costs is
early refusals: capacity drawn by no request yet is held for a moment, so another process can be
refused while this one still has room. That is kept small: a lease is at most `LEASE_SHARE`-th of the
tighter budget and `LEASE_REQUESTS` worst cases, takes new draws for `LEASE_AGE` seconds only, is
given up when a read of the key's budget (`remaining`, `spent`) or a refused lease asks for it, and
is not used at all when it would cover fewer than two requests: a key near the end of its budget,
or with a tiny one, gets the exact per-request holds it always had.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEASE_AGE", "LEASE_REQUESTS", "LEASE_SHARE", "Lease", "Leases", "lease_size"]

#: A lease covers at most this many worst cases of the request that asked for it...
LEASE_REQUESTS = 64
#: ...and at most this fraction (1/n) of the key's tighter budget.
LEASE_SHARE = 64
#: Seconds a lease takes new draws; it is settled once its last draw is done.
LEASE_AGE = 1.0


def lease_size(worst: int, daily: int, monthly: int) -> int:
    """Nano-units to lease for a request of `worst` against budgets `daily`/`monthly` (-1: none);
    0 when a lease would cover fewer than two such requests (hold the request alone)."""
    budgets = [b for b in (daily, monthly) if b >= 0]
    if not budgets or worst <= 0:
        return 0
    size = min(LEASE_REQUESTS * worst, min(budgets) // LEASE_SHARE)
    return size if size >= 2 * worst else 0


@dataclass(slots=True, eq=False)
class Lease:
    """One store hold (`id`, `size` nano-units) shared by this process's requests of one key in one
    day/month window. Always: size = spent + (worst cases of the draws in flight) + free."""

    id: str
    key_id: str
    day: str
    month: str
    size: int
    free: int
    until: float  # draws are taken before this instant (time.monotonic())
    daily: int = -1  # the key's budgets in nano-units (-1: none), for its renewal
    monthly: int = -1
    inflight: int = 0
    spent: int = 0  # exact cost of the draws done
    closed: bool = False
    renewing: bool = False  # its successor was asked for (once)


class Leases:
    """This process's leases: at most one open per key, plus closed ones whose draws are still in
    flight. Every method runs on the event loop (no locks)."""

    __slots__ = ("_busy", "_open", "_ready", "drawn", "granted")

    def __init__(self) -> None:
        self.granted = 0  # leases the store granted
        self.drawn = 0  # requests served from a lease without a store call
        self._open: dict[str, Lease] = {}
        self._busy: set[Lease] = set()  # closed, draws in flight
        self._ready: list[Lease] = []  # closed, nothing in flight: to settle (take_ready)

    def draw(self, key_id: str, day: str, month: str, worst: int, now: float) -> Lease | None:
        """Take `worst` from the key's open lease when it fits (same windows, not too old);
        None: ask the store. A lease that cannot serve this draw for its windows or age is closed."""
        lease = self._open.get(key_id)
        if lease is None:
            return None
        if lease.day != day or lease.month != month or now >= lease.until:
            self._close(lease)
            return None
        if lease.free < worst:
            return None  # too little left for this one; the caller leases again (closing this one)
        lease.free -= worst
        lease.inflight += 1
        self.drawn += 1
        return lease

    def start(self, hold_id: str, key_id: str, day: str, month: str, size: int, worst: int,
              now: float, *, daily: int = -1, monthly: int = -1) -> Lease:
        """A lease the store just granted (`size` held under `hold_id`), with its first draw of
        `worst` (0: none, a renewal); the key's previous lease is closed."""
        old = self._open.pop(key_id, None)
        if old is not None:
            self._close(old)
        lease = Lease(hold_id, key_id, day, month, size, size - worst, now + LEASE_AGE, daily, monthly,
                      inflight=1 if worst else 0)
        self._open[key_id] = lease
        self.granted += 1
        return lease

    def done(self, lease: Lease, worst: int, cost: int) -> None:
        """A draw finished at `cost`: its `worst` is no longer in flight and what it did not cost
        is free again. A closed lease whose last draw this was becomes ready to settle."""
        lease.inflight -= 1
        lease.spent += cost
        lease.free += worst - cost
        if lease.closed and lease.inflight == 0 and lease in self._busy:
            self._busy.discard(lease)
            self._ready.append(lease)

    def give_up(self, key_id: str | None = None, *, now: float | None = None) -> None:
        """Close the open lease of `key_id` (None: of every key; with `now`, only those past
        their age); those with nothing in flight become ready to settle, the rest at their last
        draw."""
        if key_id is None:
            targets = list(self._open.values())
        else:
            one = self._open.get(key_id)
            targets = [one] if one is not None else []
        for lease in targets:
            if now is None or now >= lease.until:
                self._close(lease)

    def due(self, lease: Lease, now: float) -> bool:
        """Whether to ask for `lease`'s successor now (once): it is still the key's open lease and
        is past half its age or down to a quarter of its size."""
        if lease.renewing or lease.closed or self._open.get(lease.key_id) is not lease:
            return False
        if now >= lease.until - LEASE_AGE / 2 or lease.free < lease.size // 4:
            lease.renewing = True
            return True
        return False

    def abandon(self) -> None:
        """Closing down: every lease becomes ready to settle now, those with draws still in flight
        too (with the cost of their finished draws; a draw finished later is not counted)."""
        self.give_up()
        self._ready.extend(self._busy)
        self._busy.clear()

    def take_ready(self) -> list[Lease]:
        """The leases ready to settle since the last call (each returned once)."""
        ready, self._ready = self._ready, []
        return ready

    def busy(self, key_id: str) -> list[Lease]:
        """The key's leases with draws in flight (open or closed)."""
        out = [lease for lease in self._busy if lease.key_id == key_id]
        one = self._open.get(key_id)
        if one is not None and one.inflight > 0:
            out.append(one)
        return out

    def _close(self, lease: Lease) -> None:
        if self._open.get(lease.key_id) is lease:
            del self._open[lease.key_id]
        lease.closed = True
        if lease.inflight > 0:
            self._busy.add(lease)
        else:
            self._ready.append(lease)

    def open_count(self) -> int:
        """How many leases take draws."""
        return len(self._open)

    def __len__(self) -> int:
        return len(self._open) + len(self._busy)
