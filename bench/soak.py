"""``python -m bench.soak [MINUTES]`` (``make soak``): the local host on the local Cosmos server
under a mixed, seeded workload for a chosen time, then a check that nothing acknowledged is lost.

Many simulated users, each with think time between calls, send turns (new conversations and
old ones, archived ones too), list, open and page their conversations, search, share a
conversation and have another user open the share. An archival pass runs every few minutes, as
a second instance would (the service call with a clock moved forward, so conversations idle for
``ARCHIVE_IDLE_S`` count as stale and really move), and now and then a user erases everything.

Reported: requests per second, p50/p95/p99 per operation, statuses, the host process's resident
memory over time and whether it stays flat once warm (``memory_verdict``), and the final check:
every message the soak got a success for is read back, stored exactly once (``ledger_check``).
Erased users are left out of that check by design; their erasure must end in 204 and an empty
list instead. docs/testing.md ("The soak") says what counts as an error and why.

Groups: users start groups with others and send to them (some sends ask the assistant); every
acknowledged group message is read back too, and an erased member's as removed ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, Cosmos, cosmos_account, percentile

DEFAULT_MINUTES = 20.0
DEFAULT_USERS = 40
DEFAULT_SEED = 31
THINK_MEAN_S = 2.0  # exponential think time between one user's calls, capped at 4x the mean
ARCHIVE_EVERY_S = 180.0  # an archival pass every 3 minutes (every third of a short run)
# A conversation untouched this long is stale for the soak's passes (a quarter of a short run).
ARCHIVE_IDLE_S = 60.0
ERASE_EVERY_S = 240.0  # a user erases everything every 4 minutes (at least once a run)
RSS_EVERY_S = 5.0
# Retrying: what the contract (docs/http.md, "Errors and Retry-After") tells a client to send
# again after the Retry-After wait, with the same clientMessageId. Retried, then counted as
# retried; a final answer of 400 or more is an error.
RETRYABLE = frozenset({429, 503})
MAX_ATTEMPTS = 5
# The status counted for a call whose connection failed before any answer (no HTTP status).
TRANSPORT_FAILED = 599
# Idle pooled connections are dropped before uvicorn's keep-alive timeout (5 s) would close them
# under a request on its way.
KEEPALIVE_EXPIRY_S = 4.0
MAX_RETRY_WAIT_S = 5.0
# Memory: warm once this share of the run is over (the SDK's caches, connection pools and
# Python's arenas fill during the first minutes); then the median of the last third of the warm
# samples may exceed the median of the first third by at most the larger of these.
WARM_FRACTION = 0.25
FLAT_TOLERANCE_FRACTION = 0.05
FLAT_TOLERANCE_MIB = 8.0
MIN_MINUTES_FOR_MEMORY_VERDICT = 10.0
WORDS: tuple[str, ...] = ("harbour", "lantern", "quartz", "meadow", "cobalt", "saffron")
WORDS += ("glacier", "orchard", "falcon", "velvet", "compass", "thistle", "ember", "juniper")


@dataclass
class Turn:
    user_text: str
    answer_text: str
    message_ids: tuple[str, str]


@dataclass
class User:
    index: int
    rng: random.Random
    generation: int = 0
    sessions: list[str] = field(default_factory=list)
    acked: dict[str, list[Turn]] = field(default_factory=dict)
    consistency: str | None = None
    counter: int = 0
    erase_requested: bool = False
    groups: list[str] = field(default_factory=list)

    @property
    def email(self) -> str:
        return f"soak-{self.index}-g{self.generation}@soak.local"

    def headers(self) -> dict[str, str]:
        headers = {"X-MS-CLIENT-PRINCIPAL-NAME": self.email}
        if self.consistency:
            headers["Parley-Consistency"] = self.consistency
        return headers


@dataclass
class Group:
    group_id: str
    members: set[str]
    # (message id, text, sender's address; None for the assistant) of every acknowledged send
    acked: list[tuple[str, str, str | None]] = field(default_factory=list)
    erased_senders: set[str] = field(default_factory=set)


@dataclass
class Share:
    share_id: str
    owner: str


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    retried: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: list[dict[str, Any]] = field(default_factory=list)
    expected_404: int = 0  # a share read while its owner was being erased
    requests: int = 0


class Soak:
    def __init__(self, http: httpx.AsyncClient, users: int, seed: int, deadline: float) -> None:
        root = random.Random(seed)
        self.http = http
        self.users = [User(i, random.Random(root.getrandbits(64))) for i in range(users)]
        self.rng = random.Random(root.getrandbits(64))
        self.deadline = deadline
        self.stats = Stats()
        self.shares: list[Share] = []
        self.groups: dict[str, Group] = {}
        self.erased_emails: set[str] = set()
        self.erased_turns = 0
        self.erasures = 0

    async def call(
        self,
        op: str,
        user: User,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        """One API call as a careful client makes it: retried after Retry-After where the
        contract says so, its consistency token kept, its final status counted."""
        response: httpx.Response | None = None
        for attempt in range(MAX_ATTEMPTS):
            started = time.perf_counter()
            try:
                response = await self.http.request(method, url, headers=user.headers(), **kwargs)
            except httpx.TransportError as exc:
                # A connection that failed before an answer: sent again, as a client does (every
                # call here is safe to repeat: reads, and turns with their clientMessageId).
                self.stats.requests += 1
                self.stats.retried[op][TRANSPORT_FAILED] += 1
                response = httpx.Response(TRANSPORT_FAILED, text=f"{type(exc).__name__}: {exc}")
                if attempt + 1 < MAX_ATTEMPTS:
                    await asyncio.sleep(0.5)
                    continue
                break
            self.stats.latencies[op].append(time.perf_counter() - started)
            self.stats.requests += 1
            token = response.headers.get("Parley-Consistency")
            if token:
                user.consistency = token
            if response.status_code in RETRYABLE and attempt + 1 < MAX_ATTEMPTS:
                self.stats.retried[op][response.status_code] += 1
                wait = float(response.headers.get("Retry-After", "1"))
                await asyncio.sleep(min(wait, MAX_RETRY_WAIT_S))
                continue
            break
        assert response is not None
        self.stats.statuses[op][response.status_code] += 1
        if response.status_code not in ok:
            self.stats.errors.append(
                {"op": op, "status": response.status_code, "body": response.text[:300]}
            )
        return response

    # -- what a user does -------------------------------------------------------------------

    async def turn(self, user: User) -> None:
        user.counter += 1
        new = not user.sessions or user.rng.random() < 0.15
        sid = None if new else user.rng.choice(user.sessions)
        words = " ".join(user.rng.choice(WORDS) for _ in range(6))
        text = f"u{user.index}g{user.generation}n{user.counter} {words}: what do you make of it?"
        body: dict[str, Any] = {"message": text, "clientMessageId": uuid.uuid4().hex}
        if sid:
            body["sessionId"] = sid
        response = await self.call("turn", user, "POST", "/api/chat", json=body)
        if response.status_code != 200:
            return
        data = response.json()
        sid = str(data["sessionId"])
        user_msg, answer = data["messages"][0], data["messages"][1]
        if sid not in user.acked:
            user.sessions.append(sid)
            user.acked[sid] = []
        user.acked[sid].append(
            Turn(user_msg["content"], answer["content"], (user_msg["id"], answer["id"]))
        )

    async def list_sessions(self, user: User) -> None:
        archived = "true" if user.rng.random() < 0.2 else "false"
        await self.call("list", user, "GET", f"/api/sessions?limit=20&archived={archived}")

    async def open_session(self, user: User) -> None:
        if not user.sessions:
            return await self.list_sessions(user)
        sid = user.rng.choice(user.sessions)
        await self.call("open", user, "GET", f"/api/sessions/{sid}")

    async def page_messages(self, user: User) -> None:
        if not user.sessions:
            return await self.list_sessions(user)
        sid = user.rng.choice(user.sessions)
        await self.call("page", user, "GET", f"/api/sessions/{sid}/messages?limit=20")

    async def search(self, user: User) -> None:
        q = " ".join(user.rng.sample(WORDS, 2))
        archived = user.rng.choice(["false", "all"])
        await self.call("search", user, "GET", "/api/search", params={"q": q, "archived": archived})

    async def share(self, user: User) -> None:
        if user.sessions and (not self.shares or user.rng.random() < 0.5):
            sid = user.rng.choice(user.sessions)
            body = {"audience": "signed_in", "expiresInDays": 7}
            response = await self.call(
                "share_create", user, "POST", f"/api/sessions/{sid}/shares", ok=(201,), json=body
            )
            if response.status_code == 201:
                self.shares.append(Share(str(response.json()["shareId"]), user.email))
            return
        if not self.shares:
            return await self.list_sessions(user)
        share = user.rng.choice(self.shares)
        response = await self.call(
            "share_read", user, "GET", f"/api/shares/{share.share_id}", ok=(200, 404)
        )
        if response.status_code == 404:
            if share.owner in self.erased_emails:
                self.stats.expected_404 += 1  # its owner erased everything: revoked, by design
            else:
                self.stats.errors.append({"op": "share_read", "status": 404, "body": "live"})

    async def group_message(self, user: User) -> None:
        """Start a group with up to three other users, or send to one of the user's groups
        (one send in ten asks the assistant too)."""
        if not user.groups or (len(user.groups) < 3 and user.rng.random() < 0.1):
            others = [u for u in self.users if u is not user]
            invited = user.rng.sample(others, min(3, len(others)))
            start = {"name": f"soak {user.index}", "members": [u.email for u in invited]}
            response = await self.call(
                "group_create", user, "POST", "/api/groups", ok=(201,), json=start
            )
            if response.status_code == 201:
                gid = str(response.json()["groupId"])
                self.groups[gid] = Group(gid, {user.email, *(u.email for u in invited)})
                for member in (user, *invited):
                    member.groups.append(gid)
            return
        group = self.groups[user.rng.choice(user.groups)]
        user.counter += 1
        text = f"u{user.index}g{user.generation}n{user.counter} " + " ".join(
            user.rng.choice(WORDS) for _ in range(5)
        )
        body: dict[str, Any] = {"content": text, "clientMessageId": uuid.uuid4().hex}
        if user.rng.random() < 0.1:
            body["ask"] = True
        response = await self.call(
            "group_message",
            user,
            "POST",
            f"/api/groups/{group.group_id}/messages",
            ok=(201,),
            json=body,
        )
        if response.status_code == 201:
            for message in response.json()["messages"]:
                sender = user.email if message["role"] == "user" else None
                group.acked.append((str(message["id"]), str(message["content"]), sender))

    async def erase(self, user: User) -> None:
        """Delete everything, step by step until 204; then the list must be empty, and the user
        comes back as a new identity (the same number of users keeps working)."""
        email = user.email
        self.erased_emails.add(email)
        self.shares = [s for s in self.shares if s.owner != email]
        for gid in user.groups:
            # The group keeps their messages as removed ones; they leave it (docs/privacy.md).
            self.groups[gid].members.discard(email)
            self.groups[gid].erased_senders.add(email)
        for _ in range(100):
            response = await self.call("erase", user, "DELETE", "/api/sessions", ok=(202, 204))
            if response.status_code != 202:
                break
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        listed = await self.call("list", user, "GET", "/api/sessions?archived=false")
        archived = await self.call("list", user, "GET", "/api/sessions?archived=true")
        for answer in (listed, archived):
            if answer.status_code == 200 and answer.json()["sessions"]:
                self.stats.errors.append({"op": "erase", "status": 200, "body": "not empty"})
        self.erased_turns += sum(len(turns) for turns in user.acked.values())
        self.erasures += 1
        user.generation += 1
        user.sessions, user.acked, user.consistency, user.counter = [], {}, None, 0
        user.groups = []

    async def user_loop(self, user: User) -> None:
        table = OPERATIONS
        names = list(table)
        weights = [table[name][0] for name in names]
        while time.monotonic() < self.deadline:
            await asyncio.sleep(min(user.rng.expovariate(1 / THINK_MEAN_S), 4 * THINK_MEAN_S))
            if time.monotonic() >= self.deadline:
                break
            if user.erase_requested:
                user.erase_requested = False
                await self.erase(user)
                continue
            name = user.rng.choices(names, weights)[0]
            await table[name][1](self, user)

    async def eraser(self, every_s: float) -> None:
        while time.monotonic() + every_s < self.deadline:
            await asyncio.sleep(every_s)
            self.rng.choice(self.users).erase_requested = True

    # -- the final check --------------------------------------------------------------------

    async def read_back(self, user: User, sid: str) -> list[dict[str, Any]] | None:
        response = await self.call("verify", user, "GET", f"/api/sessions/{sid}")
        if response.status_code != 200:
            return None
        data = response.json()
        messages: list[dict[str, Any]] = list(data["messages"])
        more = bool(data["hasMoreMessages"])
        while more:
            before = messages[0]["id"]
            page = await self.call(
                "verify", user, "GET", f"/api/sessions/{sid}/messages?before={before}&limit=200"
            )
            if page.status_code != 200:
                return None
            body = page.json()
            messages = list(body["messages"]) + messages
            more = bool(body["hasMore"])
        return messages

    async def verify_groups(self) -> dict[str, Any]:
        """Every acknowledged group message read back by a remaining member, exactly once; an
        erased sender's messages kept as removed ones."""
        by_email = {u.email: u for u in self.users}
        acked = once = removed = 0
        missing: list[str] = []
        duplicated: list[str] = []
        for group in self.groups.values():
            reader = next((by_email[e] for e in sorted(group.members) if e in by_email), None)
            if reader is None or not group.acked:
                continue  # every member erased: the group is deleted, by design
            stored: list[dict[str, Any]] = []
            after, more = 0, True
            while more:
                page = await self.call(
                    "verify",
                    reader,
                    "GET",
                    f"/api/groups/{group.group_id}/messages?after={after}&limit=100",
                )
                if page.status_code != 200:
                    break
                body = page.json()
                stored += body["messages"]
                more = bool(body["hasMore"]) and bool(body["messages"])
                after = int(body["messages"][-1]["seq"]) if body["messages"] else after
            ids = Counter(str(m["id"]) for m in stored)
            texts = Counter(str(m["content"]) for m in stored if m["content"])
            for message_id, text, sender in group.acked:
                acked += 1
                if sender in group.erased_senders:
                    gone = [m for m in stored if m["id"] == message_id and m.get("removed")]
                    if len(gone) == 1 and texts[text] == 0:
                        removed += 1
                    else:
                        duplicated.append(message_id)  # kept, or its text kept: not erased
                elif ids[message_id] == 1 and texts[text] == 1:
                    once += 1
                elif ids[message_id] == 0:
                    missing.append(message_id)
                else:
                    duplicated.append(message_id)
        return {
            "group_messages_acknowledged": acked,
            "group_messages_stored_exactly_once": once,
            "group_messages_removed_with_their_sender": removed,
            "group_messages_missing": missing[:20],
            "group_messages_missing_count": len(missing),
            "group_messages_wrong": duplicated[:20],
            "group_messages_wrong_count": len(duplicated),
        }

    async def verify(self) -> dict[str, Any]:
        acked = found_once = 0
        missing: list[str] = []
        duplicated: list[str] = []
        for user in self.users:
            for sid, turns in user.acked.items():
                messages = await self.read_back(user, sid)
                stored = Counter((m["id"], m["content"]) for m in messages or [])
                for turn in turns:
                    for message_id, text in zip(
                        turn.message_ids, (turn.user_text, turn.answer_text), strict=True
                    ):
                        acked += 1
                        seen = stored[(message_id, text)]
                        # The same text under another id would be a second copy too.
                        copies = sum(n for (_, content), n in stored.items() if content == text)
                        if seen == 1 and copies == 1:
                            found_once += 1
                        elif seen == 0:
                            missing.append(message_id)
                        else:
                            duplicated.append(message_id)
        groups = await self.verify_groups()
        return {
            **groups,
            "acknowledged_messages": acked,
            "stored_exactly_once": found_once,
            "missing": missing[:20],
            "missing_count": len(missing),
            "duplicated": duplicated[:20],
            "duplicated_count": len(duplicated),
            "erased_users": self.erasures,
            "erased_turns_excepted": self.erased_turns,
        }


Operation = Callable[[Soak, User], Awaitable[None]]
# What a user does, and how often (weights, not shares).
OPERATIONS: dict[str, tuple[float, Operation]] = {
    "turn": (45.0, Soak.turn),
    "list": (12.0, Soak.list_sessions),
    "open": (12.0, Soak.open_session),
    "page": (6.0, Soak.page_messages),
    "search": (12.0, Soak.search),
    "share": (6.0, Soak.share),
    "group": (8.0, Soak.group_message),
}


# -- memory ---------------------------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    """The process's resident set (VmRSS), in MiB; None once it is gone or off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory_verdict(
    samples: list[tuple[float, float]], duration_s: float, requests_when_warm: int
) -> dict[str, Any]:
    """Flat once warm: after ``WARM_FRACTION`` of the run, the median RSS of the last third of
    the samples exceeds that of the first third by at most the tolerance. Medians, not single
    samples: one garbage-collection cycle or a burst of open streams moves a sample, not a
    median. ``detects_leak_per_request_bytes`` says what the tolerance lets through: a leak of
    more than that many bytes per request over the warm part would fail the check."""
    warm_from = duration_s * WARM_FRACTION
    warm = [mib for t, mib in samples if t >= warm_from]
    out: dict[str, Any] = {
        "warm_from_s": round(warm_from, 1),
        "samples": len(samples),
        "warm_samples": len(warm),
    }
    if len(warm) < 6:
        return {**out, "judged": False, "flat": None, "why": "too few warm samples"}
    third = len(warm) // 3
    first, last = statistics.median(warm[:third]), statistics.median(warm[-third:])
    tolerance = max(FLAT_TOLERANCE_MIB, FLAT_TOLERANCE_FRACTION * first)
    growth = last - first
    out.update(
        first_third_median_mib=round(first, 1),
        last_third_median_mib=round(last, 1),
        growth_mib=round(growth, 1),
        tolerance_mib=round(tolerance, 1),
        max_mib=round(max(mib for _, mib in samples), 1),
        flat=growth <= tolerance,
    )
    # The warm samples' least-squares slope, for the reader: a steady rise within the tolerance
    # is reported, not failed (it may be a cache still filling); a longer run tells which.
    warm_points = [(t, mib) for t, mib in samples if t >= warm_from]
    mean_t = statistics.fmean(t for t, _ in warm_points)
    mean_m = statistics.fmean(m for _, m in warm_points)
    spread = sum((t - mean_t) ** 2 for t, _ in warm_points)
    if spread:
        slope = sum((t - mean_t) * (m - mean_m) for t, m in warm_points) / spread
        out["warm_slope_mib_per_min"] = round(slope * 60, 3)
    if requests_when_warm:
        out["detects_leak_per_request_bytes"] = round(tolerance * 2**20 / requests_when_warm)
    judged = duration_s >= MIN_MINUTES_FOR_MEMORY_VERDICT * 60
    out["judged"] = judged
    if not judged:
        out["why"] = f"runs under {MIN_MINUTES_FOR_MEMORY_VERDICT:g} minutes are not judged"
    return out


def latency_table(stats: Stats) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for op in sorted(stats.latencies):
        ms = [s * 1000 for s in stats.latencies[op]]
        out[op] = {
            "n": len(ms),
            "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "statuses": {str(k): v for k, v in sorted(stats.statuses[op].items())},
            "retried": {str(k): v for k, v in sorted(stats.retried[op].items())},
        }
    return out


# -- the run --------------------------------------------------------------------------------


class _Ahead:
    """The clock of the soak's archival passes: ``ARCHIVE_AFTER_DAYS`` on, less the idle time,
    so that a conversation untouched for ``idle_s`` is stale to them."""

    def __init__(self, after_days: int, idle_s: float) -> None:
        self.offset = timedelta(days=after_days) - timedelta(seconds=idle_s)

    def now(self) -> datetime:
        from shared.clock import SystemClock

        return SystemClock().now() + self.offset


async def archiver(cosmos: Cosmos, database: str, soak: Soak, every_s: float) -> list[Any]:
    from shared.archive.sweep import ArchivePolicy, run_archive
    from shared.config import load_settings

    settings = load_settings({})
    policy = ArchivePolicy(after_days=settings.archive_after_days, time_budget_s=60.0)
    passes: list[Any] = []
    clock = _Ahead(settings.archive_after_days, min(ARCHIVE_IDLE_S, 3 * every_s / 4))
    store = cosmos.store(database)
    try:
        while time.monotonic() + every_s < soak.deadline:
            await asyncio.sleep(every_s)
            summary = await run_archive(store, policy, clock=clock)
            passes.append(summary.model_dump(by_alias=True))
            if summary.failed:
                soak.stats.errors.append({"op": "archive", "status": 0, "body": "failed > 0"})
    finally:
        await store.close()
    return passes


async def sample_rss(pid: int, started: float, deadline: float, every_s: float) -> list[Any]:
    samples: list[tuple[float, float]] = []
    while time.monotonic() < deadline:
        mib = rss_mib(pid)
        if mib is not None:
            samples.append((round(time.monotonic() - started, 1), round(mib, 1)))
        await asyncio.sleep(every_s)
    return samples


async def drive(
    base_url: str, pid: int, cosmos: Cosmos, database: str, plan: argparse.Namespace
) -> dict[str, Any]:
    duration_s = plan.minutes * 60
    started = time.monotonic()
    deadline = started + duration_s
    archive_every = min(ARCHIVE_EVERY_S, duration_s / 3)
    erase_every = min(ERASE_EVERY_S, duration_s / 2)
    limits = httpx.Limits(max_connections=plan.users + 8, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        soak = Soak(http, plan.users, plan.seed, deadline)
        rss = asyncio.create_task(sample_rss(pid, started, deadline, plan.rss_every))
        archive = asyncio.create_task(archiver(cosmos, database, soak, archive_every))
        erase = asyncio.create_task(soak.eraser(erase_every))
        warm_requests: list[int] = []

        async def mark_warm() -> None:
            await asyncio.sleep(duration_s * WARM_FRACTION)
            warm_requests.append(soak.stats.requests)

        warm = asyncio.create_task(mark_warm())
        await asyncio.gather(*(soak.user_loop(u) for u in soak.users))
        elapsed = time.monotonic() - started
        requests = soak.stats.requests
        passes = await archive
        await erase
        await warm
        samples = await rss
        ledger = await soak.verify()
    stats = soak.stats
    errors = Counter(f"{e['op']} {e['status']}" for e in stats.errors)
    memory = memory_verdict(samples, duration_s, requests - (warm_requests or [0])[0])
    return {
        "minutes": plan.minutes,
        "users": plan.users,
        "seed": plan.seed,
        "think_mean_s": THINK_MEAN_S,
        "elapsed_s": round(elapsed, 1),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 2),
        "operations": latency_table(stats),
        "errors_by_status": dict(sorted(errors.items())),
        "error_samples": stats.errors[:10],
        "share_404_after_erasure": stats.expected_404,
        "archival_passes": passes,
        "memory": memory,
        "rss_mib": samples,
        "ledger_check": ledger,
    }


def verdict(report: dict[str, Any]) -> list[str]:
    """What fails the run: an error status, a lost or doubled message, a memory verdict of
    'growing' (in runs long enough to be judged)."""
    problems: list[str] = []
    if report["errors_by_status"]:
        problems.append(f"error statuses: {report['errors_by_status']}")
    ledger = report["ledger_check"]
    if ledger["missing_count"] or ledger["duplicated_count"]:
        problems.append(
            f"{ledger['missing_count']} acknowledged messages missing, "
            f"{ledger['duplicated_count']} stored more than once"
        )
    if ledger.get("group_messages_missing_count") or ledger.get("group_messages_wrong_count"):
        problems.append(
            f"group messages: {ledger['group_messages_missing_count']} missing, "
            f"{ledger['group_messages_wrong_count']} stored more than once or not erased"
        )
    if ledger["acknowledged_messages"] == 0:
        problems.append("nothing was acknowledged: the soak did not run")
    memory = report["memory"]
    if memory.get("judged") and not memory.get("flat"):
        problems.append(f"memory grew once warm: {memory}")
    return problems


def summary_md(report: dict[str, Any]) -> str:
    lines = [
        f"Soak: {report['minutes']:g} min, {report['users']} users (seed {report['seed']}), "
        f"{report['requests']} requests, {report['requests_per_s']} requests/s",
        "",
        "| operation | n | p50 ms | p95 ms | p99 ms | statuses | retried |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for op, row in report["operations"].items():
        lines.append(
            f"| {op} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
            f"{row['statuses']} | {row['retried'] or ''} |"
        )
    m, ledger = report["memory"], report["ledger_check"]
    lines += [
        "",
        f"Errors by status: {report['errors_by_status'] or 'none'}",
        f"Archival passes: {len(report['archival_passes'])}, moved "
        f"{sum(p['archived'] for p in report['archival_passes'])}, failed "
        f"{sum(p['failed'] for p in report['archival_passes'])}",
        f"Memory (host RSS): {m}",
        f"Ledger: {ledger['stored_exactly_once']} of {ledger['acknowledged_messages']} "
        f"acknowledged messages stored exactly once; missing {ledger['missing_count']}, "
        f"duplicated {ledger['duplicated_count']}; {ledger['erased_users']} users erased "
        f"({ledger['erased_turns_excepted']} turns excepted)",
        f"Groups: {ledger.get('group_messages_stored_exactly_once', 0)} of "
        f"{ledger.get('group_messages_acknowledged', 0)} acknowledged group messages stored "
        f"exactly once, {ledger.get('group_messages_removed_with_their_sender', 0)} removed "
        "with their erased sender",
    ]
    return "\n".join(lines)


def run(plan: argparse.Namespace) -> dict[str, Any]:
    from tools.local.host import run_host

    database = f"soak-{uuid.uuid4().hex[:8]}"
    with cosmos_account() as cosmos, tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
        env = {
            "AUTH_MODE": "dev",
            "STORAGE_BACKEND": "cosmos",
            "COSMOS_ENDPOINT": cosmos.endpoint,
            "COSMOS_KEY": cosmos.key,
            "COSMOS_VERIFY_TLS": "true" if cosmos.verify_tls else "false",
            "COSMOS_DATABASE": database,
            "LLM_PROVIDER": "echo",
            # The budget stays on (its requests are part of every turn) but no soak user can
            # spend it: a refusal would be the budget working, not a fault.
            "USER_DAILY_TOKEN_LIMIT": "1000000000",
            # The host's own timer stays off: the soak runs its passes when it chooses.
            "ARCHIVE_SCHEDULE": "0 0 3 1 1 *",
        }
        log = Path(tmp) / "host.log"
        with run_host(env, log) as host:
            report = asyncio.run(drive(host.base_url, host.process.pid, cosmos, database, plan))
        report["host_log_tail"] = log.read_text(errors="replace").splitlines()[-20:]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("minutes", nargs="?", type=float, default=DEFAULT_MINUTES)
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--rss-every", type=float, default=RSS_EVERY_S, help="seconds")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "soak.json", help="the JSON report (written)"
    )
    plan = parser.parse_args(argv)
    report = run(plan)
    problems = verdict(report)
    report["problems"] = problems
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(json.dumps(report, indent=1) + "\n")
    print(summary_md(report))
    if problems:
        print("soak: FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"soak: passed ({plan.out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
