"""A rogue peer fuzzes a live client: nothing it sends crashes it, and every message is counted.

The rogue (``fuzzing_rogue``) sends, through a live ``sidecar.connect``
client, thousands of random moves drawn from one seed: frame sets that are
not messages, bad and missing signatures, replays, messages for parents no
one knows, replies of types no request waits for, malformed comms (no
comm_id, bad buffer_paths; data of any JSON type is valid), malformed
outputs inside running requests, malformed status and input requests, and
frames over ``max_message_size`` on iopub (inside a request and outside)
and shell (as a reply).  Between episodes it makes sure the client has
taken everything (so nothing is in flight when the counters are compared).

What holds: the ``async with`` never exits with an error and nothing is
logged as an internal error; every request completes (the execute episodes
with exactly their valid outputs, the health checks after each episode);
after every episode, each counter of ``kernel.statistics()`` has moved by
exactly what the moves sent say it should.  A failure names the seed
(``SIDECAR_STRESS_SEED``) and the episode, and replays with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from fuzzing_rogue import COUNTERS, Channel, Fuzzer, FuzzingRogue, Ledger, Move, fuzzing_rogue
from stress_support import SEED, record, scale, wait_until

import sidecar
from sidecar.wire import ExecuteReply, KernelInfoReply, Message

pytestmark = [pytest.mark.anyio, pytest.mark.stress, pytest.mark.timeout(scale(60, 600))]

LIMIT = 64 * 1024
"""max_message_size of the client under test."""
MESSAGES = scale(1_500, 12_000)
"""Fuzzed moves to send, at least."""
OVERSIZED = scale(3, 24)
"""Oversized episodes (each costs the client a socket rebuild: a quarter second)."""
SENTINEL = "stress-sentinel"


class Run:
    """One fuzzing run: the rogue, the client, and what the counters should say."""

    def __init__(self, rogue: FuzzingRogue, kernel: sidecar.Kernel, seed: int) -> None:
        self.rogue = rogue
        self.kernel = kernel
        self.fuzz = Fuzzer(seed, rogue.session)
        self.rng = self.fuzz.rng
        self.ledger = Ledger()
        self.identity = kernel.session.session_id.encode()
        self.baseline = kernel.statistics()
        self.episode = "setup"
        self.sentinel_seen = 0
        self.sentinel_sent = 0
        self.requests = 0

    # -- accounting --------------------------------------------------------------------

    def moved(self) -> dict[str, int]:
        now = self.kernel.statistics()
        return {name: getattr(now, name) - getattr(self.baseline, name) for name in COUNTERS}

    def _failure(self, what: str) -> str:
        expected, moved = self.ledger.expected(), self.moved()
        diff = {k: (expected[k], moved[k]) for k in COUNTERS if expected[k] != moved[k]}
        return (
            f"{what} (seed {SEED}, episode {self.episode}): counters (expected, actual) "
            f"differ: {diff}; sent so far: {dict(self.ledger.kinds)}"
        )

    async def wait_received(self) -> None:
        """Until the client has taken every frame set sent so far."""
        try:
            await wait_until(
                lambda: self.moved()["received"] >= self.ledger["received"], "received"
            )
        except AssertionError:
            raise AssertionError(self._failure("frame sets went missing")) from None

    async def settle(self) -> None:
        """Until the client has handled everything sent, then compare every counter.

        Unsolicited comm messages are handled by a background task, in
        arrival order: a comm message to our own comm, sent last, marks
        the end of what it has to do.
        """
        await self.wait_received()
        self.sentinel_sent += 1
        message = self.rogue.session.message(
            "comm_msg", {"comm_id": SENTINEL, "data": {"seq": self.sentinel_sent}}
        )
        await self.send_message("iopub", message, unsolicited=1)
        await wait_until(lambda: self.sentinel_seen == self.sentinel_sent, "the sentinel")
        assert self.moved() == self.ledger.expected(), self._failure("miscounted")
        self.fuzz.settled()

    # -- sending -----------------------------------------------------------------------

    async def send(self, move: Move) -> None:
        self.ledger.update(move.effect)
        self.ledger.kinds[move.kind] += 1
        await self.rogue.send_move(move, self.identity)

    async def send_message(self, channel: Channel, message: Message, **effect: int) -> None:
        """A message of the kernel's own part (status, reply), not a fuzzed one."""
        frames = [bytes(f) for f in self.rogue.session.serialize(message)]
        self.ledger.update(received=1, **effect)
        await self.rogue.send_move(Move("scaffold", channel, frames), self.identity)

    async def status(self, state: str, parent: Message, **effect: int) -> None:
        await self.send_message(
            "iopub",
            self.rogue.session.message("status", {"execution_state": state}, parent=parent),
            **effect,
        )

    # -- episodes ------------------------------------------------------------------------

    async def open_sentinel(self) -> None:
        # The status of the readiness probe's kernel_info may still be on its
        # way when connect() returns: the counters start once it is in.
        await wait_until(lambda: self.kernel.execution_state == "idle", "the probe's idle")
        self.baseline = self.kernel.statistics()

        def on_open(comm: sidecar.Comm, message: Message) -> None:
            comm.on_msg(lambda m: setattr(self, "sentinel_seen", m.content.data["seq"]))

        self.kernel.comms.register_target(SENTINEL, on_open)
        opened = self.rogue.session.message(
            "comm_open", {"comm_id": SENTINEL, "target_name": SENTINEL, "data": {}}
        )
        await self.send_message("iopub", opened, unsolicited=1)
        await wait_until(lambda: SENTINEL in self.kernel.comms, "the sentinel comm")

    async def health(self) -> None:
        """A request completes (the rogue answers kernel_info by itself: busy, reply, idle)."""
        with anyio.fail_after(10):
            reply = await self.kernel.kernel_info()
        assert isinstance(reply, KernelInfoReply), self._failure(f"kernel_info gave {reply!r}")
        self.ledger.update(received=3, routed=3)
        self.requests += 1

    async def unsolicited(self) -> None:
        for _ in range(self.rng.randint(20, 120)):
            fuzz = self.fuzz
            await self.send(fuzz.invalid() if self.rng.random() < 0.4 else fuzz.unsolicited())

    async def _execute(self, outputs: sidecar.Outputs, result: dict[str, Any]) -> None:
        try:
            result["reply"] = await self.kernel.execute("fuzzed", handlers=[outputs])
        except sidecar.SidecarError as e:
            result["error"] = e
        else:
            self.requests += 1

    async def request(self) -> None:
        """An execute the rogue answers with fuzz in the middle: it completes, whole."""
        outputs = sidecar.Outputs()
        result: dict[str, Any] = {}
        stdout: list[str] = []
        count = self.rng.randint(1, 10**6)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._execute, outputs, result)
                _, request = await self.rogue.next_request()
                await self.status("busy", request, routed=1)
                for _ in range(self.rng.randint(5, 60)):
                    await self.send(self.fuzz.in_request(request, stdout))
                # The reply goes on shell: it must not overtake the outputs.
                await self.wait_received()
                reply = self.rogue.session.message(
                    "execute_reply", {"status": "ok", "execution_count": count}, parent=request
                )
                await self.send_message("shell", reply, routed=1)
                await self.status("idle", request, routed=1)
        assert "error" not in result, self._failure(f"the execute failed: {result}")
        assert result["reply"] == ExecuteReply(execution_count=count)
        got, want = outputs.text("stdout"), "".join(stdout)
        assert got == want, self._failure(f"stdout was {got!r}, not {want!r}")

    async def oversized_output(self) -> None:
        """An output over the limit inside a request: a placeholder in its place,
        iopub rebuilt, and what follows arrives."""
        outputs = sidecar.Outputs()
        result: dict[str, Any] = {}
        fuzz = self.fuzz
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._execute, outputs, result)
                _, request = await self.rogue.next_request()
                s = self.rogue.session
                await self.status("busy", request, routed=1)
                before = s.message("stream", {"name": "stdout", "text": "before "}, parent=request)
                await self.send_message("iopub", before, routed=1)
                await self.wait_received()
                text = fuzz.oversized_text(LIMIT)
                huge = s.message("stream", {"name": "stdout", "text": text}, parent=request)
                # Never received; its placeholder is routed to the request.
                await self._oversized("iopub", huge, routed=1)
                after = s.message("stream", {"name": "stdout", "text": "after"}, parent=request)
                await self.send_message("iopub", after, routed=1)
                await self.wait_received()
                reply = s.message(
                    "execute_reply", {"status": "ok", "execution_count": 1}, parent=request
                )
                await self.send_message("shell", reply, routed=1)
        # With iopub known to have lost messages, the request completes on its
        # reply; its idle, sent only now, is no one's.
        await self.status("idle", request, unsolicited=1)
        assert "error" not in result, self._failure(f"the execute failed: {result}")
        assert isinstance(result["reply"], ExecuteReply)
        assert outputs.text("stdout") == "before after"
        assert f"max_message_size={LIMIT}" in outputs.text("stderr")

    async def oversized_reply(self) -> None:
        """A reply over the limit: its request fails with MessageTooLarge, shell is rebuilt."""
        result: dict[str, Any] = {}
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._execute, sidecar.Outputs(), result)
                _, request = await self.rogue.next_request()
                await self.status("busy", request, routed=1)
                await self.wait_received()
                content = {
                    "status": "ok",
                    "execution_count": 1,
                    "payload": [{"x": "y" * 4 * LIMIT}],
                }
                reply = self.rogue.session.message("execute_reply", content, parent=request)
                await self._oversized("shell", reply)
        error = result.get("error")
        assert isinstance(error, sidecar.MessageTooLarge), self._failure(f"got {result}")
        assert (error.channel, error.limit) == ("shell", LIMIT)
        await self.status("idle", request, unsolicited=1)
        # The rogue can reach the rebuilt socket once the client has used it.
        await self.health()

    async def oversized_unsolicited(self) -> None:
        message = self.rogue.session.message(
            "display_data", {"data": {"text/plain": self.fuzz.oversized_text(LIMIT)}}
        )
        await self._oversized("iopub", message)

    async def _oversized(self, channel: Channel, message: Message, **effect: int) -> None:
        subscriptions = self.rogue.subscriptions
        frames = [bytes(f) for f in self.rogue.session.serialize(message)]
        self.ledger.update(dropped_oversized=1, **effect)
        self.ledger.kinds[f"oversized_{channel}"] += 1
        await self.rogue.send_move(Move("oversized", channel, frames), self.identity)
        await wait_until(
            lambda: self.moved()["dropped_oversized"] == self.ledger["dropped_oversized"],
            "the oversized frame dropped",
        )
        if channel == "iopub":
            # Nothing may be published until the rebuilt socket is subscribed:
            # it would be lost, as anything published to no one is.
            # Two subscriptions, each welcomed: everything, and the client's own topic.
            await wait_until(lambda: self.rogue.subscriptions >= subscriptions + 2, "resubscribed")
            self.ledger.update(received=2, unsolicited=2)


async def test_a_rogue_peer_fuzzing_a_live_client_never_crashes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    started = anyio.current_time()
    episodes = 0
    oversized = [Run.oversized_output, Run.oversized_reply, Run.oversized_unsolicited]
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        async with (
            fuzzing_rogue(tmp_path) as rogue,
            sidecar.connect(rogue.info, max_message_size=LIMIT) as kernel,
        ):
            run = Run(rogue, kernel, SEED)
            await run.open_sentinel()
            await run.settle()
            spacing = max(1, MESSAGES // 40 // OVERSIZED)
            done_oversized = 0
            while sum(run.ledger.kinds.values()) < MESSAGES or done_oversized < OVERSIZED:
                episodes += 1
                if episodes % spacing == 0 and done_oversized < OVERSIZED:
                    episode = oversized[done_oversized % len(oversized)]
                    done_oversized += 1
                elif run.rng.random() < 0.5:
                    episode = Run.unsolicited
                else:
                    episode = Run.request
                run.episode = f"{episodes}: {episode.__name__}"
                await episode(run)
                await run.health()
                await run.settle()
            assert kernel.state == "ready"
            assert kernel.statistics().waiting == 0
            with anyio.fail_after(10):
                assert isinstance(await kernel.kernel_info(), KernelInfoReply)
    # Leaving the block raised nothing: the client survived.  Nothing it
    # caught was an internal error either (those are logged at ERROR).
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:5]
    took = anyio.current_time() - started
    kinds = run.ledger.kinds
    fuzzed = sum(n for kind, n in kinds.items())
    record(
        "rogue_peer",
        anyio_backend,
        seed=SEED,
        fuzzed_messages=fuzzed,
        episodes=episodes,
        requests_completed=run.requests,  # the health checks too
        oversized=done_oversized,
        seconds=round(took, 2),
        counters=run.ledger.expected(),
        sent_by_kind=dict(sorted(kinds.items())),
    )
    assert fuzzed >= MESSAGES
