"""The actions bench's plan: which actor fires which action on which request, and when.

Pure (no database, no HTTP): from the pool of requests written in setup (each ``assigned`` at
the grid level, with its offered volunteers), the volunteers' free load slots and the
volunteers a leader may hand work to, build ``Unit``s — one action on its own request, or a
contended pair (two actors, one request, the same scheduled instant) — so that the actions
follow the fixed mix ``MIX`` and at least ``contended_share`` of them are in pairs.

Actors are accounts named after what they are (``account_*``): the leader of a grid, the
staff of a community, a volunteer. A unit may need its request claimed in setup first
(``preclaim``: resolve by the assignee, give_back, escalate of claimed work).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MIX: dict[str, float] = {
    "claim": 0.30,
    "resolve": 0.20,
    "reassign": 0.15,
    "escalate": 0.10,
    "decline_give_back": 0.10,
    "reject_duplicate": 0.10,
    "reply": 0.05,
}
CATEGORY_OF = {
    "claim": "claim",
    "resolve": "resolve",
    "reassign": "reassign",
    "escalate": "escalate",
    "decline_offer": "decline_give_back",
    "give_back": "decline_give_back",
    "reject": "reject_duplicate",
    "mark_duplicate": "reject_duplicate",
    "reply": "reply",
}
# contended pairs: kind -> the two actions (two different actors, one request, one instant)
PAIRS: dict[str, tuple[str, str]] = {
    "claim_vs_claim": ("claim", "claim"),
    "claim_vs_reassign": ("claim", "reassign"),
    "resolve_vs_escalate": ("resolve", "escalate"),
    "escalate_vs_escalate": ("escalate", "escalate"),
    "reject_vs_duplicate": ("reject", "mark_duplicate"),
}
# single actions: the variants sharing a mix category, with their shares of it
VARIANTS: dict[str, tuple[tuple[str, float], ...]] = {
    "claim": (("claim", 1.0),),
    "resolve": (("resolve_assignee", 0.5), ("resolve_staff", 0.5)),
    "reassign": (("reassign_volunteer", 2 / 3), ("reassign_grid", 1 / 3)),
    "escalate": (("escalate", 0.5), ("escalate_claimed", 0.5)),
    "decline_give_back": (("decline_offer", 0.5), ("give_back", 0.5)),
    "reject_duplicate": (("reject", 0.5), ("mark_duplicate", 0.5)),
    "reply": (("reply", 1.0),),
}
SINGLE_ACTION = {
    "claim": "claim",
    "resolve_assignee": "resolve",
    "resolve_staff": "resolve",
    "reassign_volunteer": "reassign",
    "reassign_grid": "reassign",
    "escalate": "escalate",
    "escalate_claimed": "escalate",
    "decline_offer": "decline_offer",
    "give_back": "give_back",
    "reject": "reject",
    "mark_duplicate": "mark_duplicate",
    "reply": "reply",
}
# what a unit's request needs: offered volunteers with a free load slot (claimers), an
# offered volunteer at all (decline), a claim in setup, a hand-off target, an original
CLAIMERS = {"claim": 1, "claim_vs_claim": 2, "claim_vs_reassign": 1}
PRECLAIMED = frozenset({"resolve_assignee", "escalate_claimed", "give_back", "resolve_vs_escalate"})
NEEDS_TARGET = frozenset({"reassign_volunteer", "claim_vs_reassign"})
NEEDS_ORIGINAL = frozenset({"mark_duplicate", "reject_vs_duplicate"})
# allocation order: the hardest to satisfy first, those needing no offer last
ORDER = (
    "claim_vs_claim",
    "claim_vs_reassign",
    "claim",
    "resolve_vs_escalate",
    "resolve_assignee",
    "escalate_claimed",
    "give_back",
    "decline_offer",
    "reassign_volunteer",
    "reassign_grid",
    "escalate_vs_escalate",
    "reject_vs_duplicate",
    "mark_duplicate",
    "resolve_staff",
    "escalate",
    "reject",
    "reply",
)
NOTE = "已上门处理完毕（压测）"
REASON = "压测：交由他人办理"


def account_leader(grid_code: str) -> str:
    return f"bench_leader_{grid_code}"


def account_staff(community_code: str) -> str:
    return f"bench_staff_{community_code}"


def account_volunteer(volunteer_id: int) -> str:
    return f"bench_vol_{volunteer_id}"


@dataclass(frozen=True)
class Candidate:
    """A pool request as setup left it: assigned at the grid level, offered (by rank)."""

    id: int
    grid_code: str
    community_code: str
    category: str
    offers: tuple[int, ...]


@dataclass(frozen=True)
class World:
    """What the plan chooses from: the pool, each offered volunteer's free load slots, the
    volunteers a grid leader may hand work to per (community, category), live grids per
    community."""

    candidates: list[Candidate]
    headroom: dict[int, int]
    targets: dict[tuple[str, str], list[int]]
    grids: dict[str, list[str]]


@dataclass(frozen=True)
class Shot:
    """One action sent: POST /api/v1/requests/<id>/<action> as ``actor`` with ``body``."""

    action: str
    actor: str
    body: dict[str, Any]
    volunteer_id: int | None = None  # the actor's volunteer row (volunteer actors)


@dataclass
class Unit:
    """One request's share of the load: one shot, or two at the same instant (a pair)."""

    kind: str
    request_id: int
    shots: tuple[Shot, ...]
    preclaim: int | None = None  # volunteer id who claims the request in setup
    due_s: float = 0.0

    @property
    def contended(self) -> bool:
        return len(self.shots) == 2


@dataclass
class Plan:
    units: list[Unit]
    wanted: dict[str, int]  # units per kind asked for
    short: dict[str, int] = field(default_factory=dict)  # units the pool could not supply

    @property
    def actions(self) -> int:
        return sum(len(u.shots) for u in self.units)

    def mix(self) -> dict[str, float]:
        counts = Counter(CATEGORY_OF[s.action] for u in self.units for s in u.shots)
        return {k: round(counts[k] / max(self.actions, 1), 4) for k in MIX}

    def contended_share(self) -> float:
        return round(sum(len(u.shots) for u in self.units if u.contended) / max(self.actions, 1), 4)

    def accounts(self) -> set[str]:
        return {s.actor for u in self.units for s in u.shots} | set(self.volunteers())

    def volunteers(self) -> dict[str, int]:
        """Account -> volunteer id of every volunteer who acts (in the load or in setup)."""
        out = {
            s.actor: s.volunteer_id
            for u in self.units
            for s in u.shots
            if s.volunteer_id is not None
        }
        out.update({account_volunteer(u.preclaim): u.preclaim for u in self.units if u.preclaim})
        return out

    def roles(self, world: World) -> dict[str, tuple[str, dict[str, str]]]:
        """Account -> (role, where it is bound) for ``layers.auth.service.bind_role``: the
        leader of the request's grid, the staff of its community, a volunteer bound to the
        community of a request they act on (their role reaches only their own work)."""
        by_id = {c.id: c for c in world.candidates}
        out: dict[str, tuple[str, dict[str, str]]] = {}
        for u in self.units:
            c = by_id[u.request_id]
            out[account_leader(c.grid_code)] = ("grid_leader", {"grid_code": c.grid_code})
            out[account_staff(c.community_code)] = (
                "community_staff",
                {"area_code": c.community_code},
            )
            vols = [s.volunteer_id for s in u.shots if s.volunteer_id is not None]
            for v in [*vols, *([u.preclaim] if u.preclaim is not None else [])]:
                out.setdefault(account_volunteer(v), ("volunteer", {"area_code": c.community_code}))
        wanted = self.accounts()
        return {name: role for name, role in out.items() if name in wanted}


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    raw = {k: total * w / sum(weights.values()) for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: total - sum(out.values())]:
        out[k] += 1
    return out


def unit_counts(n_actions: int, contended_share: float) -> dict[str, int]:
    """Units per kind for ``n_actions`` actions in the mix, ``contended_share`` of them (at
    least) in pairs spread evenly over the pair kinds."""
    quotas = _largest_remainder(n_actions, MIX)
    n_pairs = math.ceil(n_actions * contended_share / 2)
    pairs = _largest_remainder(n_pairs, dict.fromkeys(PAIRS, 1.0))
    for kind, n in pairs.items():
        for action in PAIRS[kind]:
            quotas[CATEGORY_OF[action]] -= n
    if min(quotas.values()) < 0:
        raise ValueError(f"{n_actions} actions cannot hold {n_pairs} contended pairs")
    out = dict(pairs)
    for category, n in quotas.items():
        out.update(_largest_remainder(n, dict(VARIANTS[category])))
    return out


class _Pool:
    """Takes requests out of the pool; offer-needing kinds from the best-offered end."""

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        cands = [world.candidates[i] for i in rng.permutation(len(world.candidates))]
        by_grid = Counter(c.grid_code for c in cands)
        self.originals: dict[str, int] = {}
        free = []
        for c in cands:  # one untouched request per grid for the duplicates to point to
            if by_grid[c.grid_code] >= 2 and c.grid_code not in self.originals:
                self.originals[c.grid_code] = c.id
            else:
                free.append(c)
        free.sort(key=lambda c: -len(c.offers))
        self.free = free
        self.headroom = dict(world.headroom)

    def take(self, fits: Callable[[Candidate], bool], *, offers: bool) -> Candidate | None:
        order = range(len(self.free)) if offers else range(len(self.free) - 1, -1, -1)
        for i in order:
            if fits(self.free[i]):
                return self.free.pop(i)
        return None

    def claimers(self, c: Candidate, n: int) -> list[int]:
        free = [v for v in c.offers if self.headroom.get(v, 0) > 0][:n]
        return free if len(free) == n else []


def _target(world: World, c: Candidate, turn: int) -> int | None:
    options = [
        v for v in world.targets.get((c.community_code, c.category), ()) if v not in c.offers
    ]
    return options[turn % len(options)] if options else None


def _other_grid(world: World, c: Candidate) -> str | None:
    others = [g for g in world.grids.get(c.community_code, ()) if g != c.grid_code]
    return others[0] if others else None


def _build(kind: str, c: Candidate, pool: _Pool, world: World, turn: int) -> Unit | None:
    """The unit ``kind`` on request ``c``, or None when ``c`` cannot carry it."""
    leader, staff = account_leader(c.grid_code), account_staff(c.community_code)
    need = CLAIMERS.get(kind, 0)
    claimers = pool.claimers(c, need) if need else []
    if need and not claimers:
        return None
    pre = None
    if kind in PRECLAIMED:
        got = pool.claimers(c, 1)
        if not got:
            return None
        pre = got[0]
    target = _target(world, c, turn) if kind in NEEDS_TARGET else None
    if kind in NEEDS_TARGET and target is None:
        return None
    original = pool.originals.get(c.grid_code) if kind in NEEDS_ORIGINAL else None
    if kind in NEEDS_ORIGINAL and original is None:
        return None
    other_grid = _other_grid(world, c) if kind == "reassign_grid" else None
    if kind == "reassign_grid" and other_grid is None:
        return None
    if kind == "decline_offer" and not c.offers:
        return None

    def vol(action: str, v: int, body: dict[str, Any]) -> Shot:
        return Shot(action, account_volunteer(v), body, volunteer_id=v)

    reassign_to = {"volunteer_id": target, "reason": REASON}
    duplicate = {"duplicate_of": original, "reason": "压测：与已有诉求重复"}
    escalate = {"reason": "压测：超出网格处理能力"}
    shots: tuple[Shot, ...] = {
        "claim": lambda: (vol("claim", claimers[0], {}),),
        "resolve_assignee": lambda: (vol("resolve", pre, {"note": NOTE}),),
        "resolve_staff": lambda: (Shot("resolve", leader, {"note": NOTE}),),
        "reassign_volunteer": lambda: (Shot("reassign", leader, reassign_to),),
        "reassign_grid": lambda: (
            Shot("reassign", staff, {"grid_code": other_grid, "reason": REASON}),
        ),
        "escalate": lambda: (Shot("escalate", leader, escalate),),
        "escalate_claimed": lambda: (Shot("escalate", leader, escalate),),
        "decline_offer": lambda: (vol("decline_offer", c.offers[-1], {"note": "压测：没空"}),),
        "give_back": lambda: (vol("give_back", pre, {"reason": "压测：临时有事"}),),
        "reject": lambda: (Shot("reject", leader, {"reason": "压测：不属于受理范围"}),),
        "mark_duplicate": lambda: (Shot("mark_duplicate", leader, duplicate),),
        "reply": lambda: (Shot("reply", leader, {"note": "压测：已收到，正在安排"}),),
        "claim_vs_claim": lambda: (
            vol("claim", claimers[0], {}),
            vol("claim", claimers[1], {}),
        ),
        "claim_vs_reassign": lambda: (
            vol("claim", claimers[0], {}),
            Shot("reassign", leader, reassign_to),
        ),
        "resolve_vs_escalate": lambda: (
            vol("resolve", pre, {"note": NOTE}),
            Shot("escalate", staff, escalate),
        ),
        "escalate_vs_escalate": lambda: (
            Shot("escalate", leader, escalate),
            Shot("escalate", staff, escalate),
        ),
        "reject_vs_duplicate": lambda: (
            Shot("reject", leader, {"reason": "压测：不属于受理范围"}),
            Shot("mark_duplicate", staff, duplicate),
        ),
    }[kind]()
    for v in [*claimers, *([pre] if pre is not None else [])]:
        pool.headroom[v] -= 1
    return Unit(kind, c.id, shots, preclaim=pre)


def make_plan(
    world: World, n_actions: int, *, rate: float, contended_share: float, seed: int
) -> Plan:
    """Units for ``n_actions`` actions at ``rate`` per second: requests chosen from the pool,
    then shuffled into one timeline where unit k is due at (actions before it) / rate, so a
    pair's two shots share one instant and the offered rate holds."""
    rng = np.random.default_rng([seed, 31])
    wanted = unit_counts(n_actions, contended_share)
    pool = _Pool(world, rng)
    units: list[Unit] = []
    short: dict[str, int] = {}
    for kind in ORDER:
        offers = kind in CLAIMERS or kind in PRECLAIMED or kind == "decline_offer"
        for turn in range(wanted.get(kind, 0)):
            built: list[Unit] = []

            def fits(c: Candidate, kind: str = kind, turn: int = turn, out: list = built) -> bool:
                unit = _build(kind, c, pool, world, turn)
                if unit is not None:
                    out.append(unit)
                return unit is not None

            if pool.take(fits, offers=offers) is None:
                short[kind] = short.get(kind, 0) + 1
            else:
                units.append(built[0])
    order = rng.permutation(len(units))
    timeline, done = [], 0
    for i in order:
        unit = units[i]
        unit.due_s = done / rate
        if unit.contended and rng.random() < 0.5:  # neither side always sent first
            unit.shots = unit.shots[::-1]
        done += len(unit.shots)
        timeline.append(unit)
    if short:
        logger.warning("the pool could not supply %s", short)
    return Plan(units=timeline, wanted=wanted, short=short)
