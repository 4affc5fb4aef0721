"""A rogue kernel that fuzzes: random frame sets of every kind, each with what it should count.

Not a test module: imported as ``fuzzing_rogue``.  :class:`Fuzzer` draws
*moves* from a seeded random generator: a frame set, the channel it goes
on, and its *effect*, the amount each counter of
:meth:`sidecar.Kernel.statistics` must move by when the client takes it.
The tests sum the effects of what they sent into a :class:`Ledger` and
compare it with the client's counters, so every message is accounted for:
none may be lost, none counted twice, none taken for what it is not.

The effects follow the client's contract:

- a frame set that is not an authentic Jupyter message (no delimiter, too
  few frames, a bad or missing signature, a replay, a header that is not a
  header) is ``dropped_invalid``;
- an authentic message is ``routed`` to the request it names, else
  ``unsolicited``;
- an authentic message whose content is malformed is ``dropped_malformed``
  once something reads it: the client itself for ``status`` and
  ``execute_input`` (at once, and it goes no further), for comm messages
  (always) and for ``input_request`` (inside a request); a request's
  handlers for outputs (inside a request, here with an ``Outputs``);
  unsolicited outputs are never read;
- a frame over ``max_message_size`` is ``dropped_oversized`` and never
  received; inside a request on iopub, a placeholder output is ``routed`` in
  its place.
"""

from __future__ import annotations

import random
import string
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import zmq
from rogue_kernel import RogueKernel

from sidecar.wire import DELIM, IopubWelcome, Message, Session

Channel = Literal["iopub", "shell", "control", "stdin"]
COUNTERS = (
    "received",
    "routed",
    "unsolicited",
    "dropped_invalid",
    "dropped_oversized",
    "dropped_malformed",
    "dropped_unobserved",
)
COMM_IDS = ("w0", "w1", "w2", "w3")
"""The comms the fuzzer talks about (the suite's own comm is never among them)."""


class Ledger(Counter[str]):
    """What the counters of the client should have moved by, and what was sent, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: Counter[str] = Counter()

    def expected(self) -> dict[str, int]:
        return {name: self[name] for name in COUNTERS}


class Move:
    """One frame set to send on ``channel``, and what it should count."""

    __slots__ = ("channel", "effect", "frames", "kind")

    def __init__(self, kind: str, channel: Channel, frames: list[bytes], **effect: int) -> None:
        self.kind = kind
        self.channel = channel
        self.frames = frames
        self.effect = effect


class FuzzingRogue(RogueKernel):
    """The rogue kernel, counting the iopub subscriptions it sees.

    Verbose, so that a resubscription (the client rebuilds its iopub socket
    after dropping an oversized frame) is seen even while the old
    subscription is not yet gone; each subscription is welcomed, as 5.5
    kernels do, and each welcome is a message the client counts.
    """

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        super().__init__(tmp_path, **options)
        self.iopub.socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.subscriptions = 0

    async def _serve_subscriptions(self) -> None:
        while True:
            frames = await self.iopub.recv_multipart()
            if frames[0][:1] == b"\x01":
                # As ipykernel does: each topic's welcome goes to that topic
                # (a sidecar client subscribes to b"" and a topic of its own).
                topic = frames[0][1:]
                welcome = IopubWelcome(subscription=topic.decode(errors="replace"))
                message = self.session.message("iopub_welcome", welcome)
                await self.iopub.send(self.session.serialize(message, [topic] if topic else ()))
                self.subscriptions += 1
                self.subscribed.set()

    async def send_move(self, move: Move, identity: bytes) -> None:
        if move.channel == "iopub":
            await self.iopub.send(move.frames)
        else:
            sock = {"shell": self.shell, "control": self.control, "stdin": self.stdin}
            await sock[move.channel].send([identity, *move.frames])


@asynccontextmanager
async def fuzzing_rogue(tmp_path: Path) -> AsyncIterator[FuzzingRogue]:
    """A :class:`FuzzingRogue` serving heartbeats and kernel_info while the block runs."""
    rogue = FuzzingRogue(tmp_path)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rogue._serve_shell)
            tg.start_soon(rogue._serve_heartbeat)
            tg.start_soon(rogue._serve_subscriptions)
            try:
                yield rogue
            finally:
                tg.cancel_scope.cancel()
    finally:
        rogue.close()


class Fuzzer:
    """Random moves, reproducible from ``seed``, signed as ``session`` (the rogue's)."""

    def __init__(self, seed: int | str, session: Session) -> None:
        self.rng = random.Random(seed)
        self.session = session
        self.other_key = Session("not-the-kernels-key", session_id=session.session_id)
        self._accepted: deque[list[bytes]] = deque(maxlen=64)
        self._unsettled: list[list[bytes]] = []

    # -- building blocks -----------------------------------------------------------

    def text(self, low: int = 1, high: int = 24) -> str:
        alphabet = string.ascii_letters + string.digits + " "
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(low, high)))

    def json_value(self, depth: int = 0) -> Any:
        """Any JSON value, nested a little."""
        pick = self.rng.randrange(7 if depth < 2 else 5)
        if pick == 0:
            return None
        if pick == 1:
            return self.rng.random() < 0.5
        if pick == 2:
            return self.rng.randint(-(2**40), 2**40)
        if pick == 3:
            return self.text(0, 12)
        if pick == 4:
            return self.rng.random() * 1e6
        if pick == 5:
            return [self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return {self.text(1, 6): self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3))}

    def unknown_parent(self) -> Message:
        """A request no one made: its msg_id is known to no one."""
        return Session().message("execute_request")

    def settled(self) -> None:
        """The client has taken every frame set sent so far: they may be replayed.

        Not before: a replay sent on another channel than its original can
        overtake it, and then it is the original that is refused.
        """
        self._accepted.extend(self._unsettled)
        self._unsettled.clear()

    def _frames(self, message: Message) -> list[bytes]:
        return [bytes(f) for f in self.session.serialize(message)]

    def _authentic(self, kind: str, channel: Channel, message: Message, **effect: int) -> Move:
        frames = self._frames(message)
        self._unsettled.append(frames)
        return Move(kind, channel, frames, received=1, **effect)

    def _resigned(self, frames: list[bytes], **replace: bytes) -> list[bytes]:
        """``frames`` with some JSON frames replaced, signed again with our key."""
        at = frames.index(DELIM)
        names = ("header", "parent_header", "metadata", "content")
        for name, value in replace.items():
            frames[at + 2 + names.index(name)] = value
        frames[at + 1] = self.session.signer.sign(frames[at + 2 : at + 6])
        return frames

    # -- moves that are not authentic messages: dropped_invalid ---------------------

    def invalid(self) -> Move:
        channel: Channel = self.rng.choice(("iopub", "iopub", "shell", "control", "stdin"))
        stream = self.session.message("stream", {"name": "stdout", "text": self.text()})
        frames = self._frames(stream)
        kind = self.rng.choice(
            (
                "garbage",
                "short",
                "bad_signature",
                "unsigned",
                "other_key",
                "replay",
                "bad_header",
                "header_without_msg_type",
                "bad_parent_header",
            )
        )
        if kind == "garbage":
            frames = [
                self.rng.randbytes(self.rng.randint(0, 200)) for _ in range(self.rng.randint(1, 8))
            ]
            frames = [f for f in frames if f != DELIM] or [b"junk"]
        elif kind == "short":
            frames = frames[: self.rng.randint(1, 5)]
        elif kind == "bad_signature":
            frames[1] = self.rng.randbytes(32).hex().encode()
        elif kind == "unsigned":
            frames[1] = b""
        elif kind == "other_key":
            frames = [bytes(f) for f in self.other_key.serialize(stream)]
        elif kind == "replay" and self._accepted:
            frames = list(self.rng.choice(self._accepted))
        elif kind == "bad_header":
            frames = self._resigned(frames, header=b"{not json")
        elif kind == "header_without_msg_type":
            frames = self._resigned(frames, header=b'{"msg_id": "x"}')
        else:
            kind = "bad_parent_header"
            frames = self._resigned(frames, parent_header=b"[1, 2]")
        return Move(kind, channel, frames, received=1, dropped_invalid=1)

    # -- authentic messages no request waits for: unsolicited -----------------------

    def unsolicited(self) -> Move:
        s = self.session
        parent = self.rng.choice((None, self.unknown_parent()))
        pick = self.rng.randrange(12)
        if pick == 0:
            message = s.message("stream", {"name": "stdout", "text": self.text()}, parent=parent)
            return self._authentic("output_unknown_parent", "iopub", message, unsolicited=1)
        if pick == 1:
            # Nobody reads an output no request waits for: malformed or not,
            # it is only counted as unsolicited.
            message = s.message("stream", {"name": 5, "text": None}, parent=parent)
            return self._authentic(
                "malformed_output_unknown_parent", "iopub", message, unsolicited=1
            )
        if pick == 2:
            data = {"text/plain": self.text()}
            message = s.message("display_data", {"data": data, "metadata": {}}, parent=parent)
            return self._authentic("output_unknown_parent", "iopub", message, unsolicited=1)
        if pick == 3:
            state = self.rng.choice(("busy", "idle"))
            message = s.message("status", {"execution_state": state}, parent=parent)
            return self._authentic("status_unknown_parent", "iopub", message, unsolicited=1)
        if pick == 4:
            return self._malformed_at_ingress(parent)
        if pick == 5:
            message = s.message(f"x_fuzz_{self.text(1, 6)}", self.json_value(), parent=parent)
            channel: Channel = self.rng.choice(("iopub", "shell", "control", "stdin"))
            return self._authentic("unknown_type", channel, message, unsolicited=1)
        if pick == 6:
            msg_type = self.rng.choice(("bogus_reply", "execute_reply", "kernel_info_reply"))
            message = s.message(msg_type, {"status": "ok"}, parent=parent)
            channel = self.rng.choice(("shell", "control"))
            return self._authentic("reply_unknown_parent", channel, message, unsolicited=1)
        if pick in (7, 8):
            return self._comm(parent, unsolicited=1)
        if pick == 9:
            message = s.message("input_request", {"prompt": self.text()}, parent=parent)
            return self._authentic("input_request_unknown_parent", "stdin", message, unsolicited=1)
        if pick == 10:
            message = s.message("stream", {"name": "stderr", "text": self.text()}, parent=parent)
            frames = self._resigned(self._frames(message), content=b"{not json")
            self._unsettled.append(frames)
            return Move(
                "unparsable_output_unknown_parent", "iopub", frames, received=1, unsolicited=1
            )
        return self._comm(parent, unsolicited=1, malformed=True)

    def _malformed_at_ingress(self, parent: Message | None) -> Move:
        """A status or execute_input, which the client reads as it arrives:
        malformed, it goes no further."""
        s = self.session
        if self.rng.random() < 0.5:
            content = self.rng.choice(({"execution_state": 7}, {}, {"execution_state": None}))
            message = s.message("status", content, parent=parent)
        else:
            content = {"code": "x", "execution_count": self.text()}
            message = s.message("execute_input", content, parent=parent)
        return self._authentic("malformed_at_ingress", "iopub", message, dropped_malformed=1)

    def _comm(self, parent: Message | None, *, malformed: bool = False, **effect: int) -> Move:
        """A comm message of the kernel: comms are always read (models, comm registry)."""
        s = self.session
        comm_id = self.rng.choice(COMM_IDS)
        if not malformed:
            msg_type, content = self.rng.choice(
                (
                    ("comm_msg", {"comm_id": comm_id, "data": self.json_value()}),
                    ("comm_msg", {"comm_id": comm_id, "data": {"state": {"v": self.json_value()}}}),
                    ("comm_open", {"comm_id": comm_id, "target_name": f"fuzz-{self.text()}"}),
                    ("comm_close", {"comm_id": comm_id, "data": self.json_value()}),
                )
            )
            message = s.message(msg_type, content, parent=parent)
            return self._authentic("comm", "iopub", message, **effect)
        msg_type, content = self.rng.choice(
            (
                ("comm_msg", {"data": {"x": 1}}),  # no comm_id
                ("comm_msg", {"comm_id": 5, "data": {}}),
                ("comm_open", {"comm_id": comm_id}),  # no target_name
                ("comm_close", {"data": None}),
                (
                    "comm_msg",
                    {
                        "comm_id": comm_id,
                        "data": {
                            "state": {"a": 1},
                            "buffer_paths": self.rng.choice(([5], "x", [[{}]])),
                        },
                    },
                ),
            )
        )
        message = s.message(msg_type, content, parent=parent)
        return self._authentic("malformed_comm", "iopub", message, dropped_malformed=1, **effect)

    # -- inside a running request -------------------------------------------------------

    def in_request(self, request: Message, expected_stdout: list[str]) -> Move:
        """A move parented to ``request`` (the execute the client waits on), or any other.

        A valid stdout stream's text is appended to ``expected_stdout``: the
        request's ``Outputs`` must end with exactly these, in order.
        """
        s = self.session
        pick = self.rng.randrange(12)
        if pick < 3:
            text = self.text()
            expected_stdout.append(text)
            message = s.message("stream", {"name": "stdout", "text": text}, parent=request)
            return self._authentic("output", "iopub", message, routed=1)
        if pick == 3:
            data = {"text/plain": self.text()}
            message = s.message("display_data", {"data": data, "metadata": {}}, parent=request)
            return self._authentic("output", "iopub", message, routed=1)
        if pick == 4:
            msg_type, content = self.rng.choice(
                (
                    ("stream", {"name": 5, "text": "x"}),
                    ("stream", {"text": "no name"}),
                    ("display_data", {"data": "not a dict"}),
                    ("execute_result", {"data": [1], "execution_count": 1}),
                    ("error", {"ename": "E", "evalue": "v", "traceback": 5}),
                )
            )
            message = s.message(msg_type, content, parent=request)
            return self._authentic(
                "malformed_output", "iopub", message, routed=1, dropped_malformed=1
            )
        if pick == 5:
            # Not the reply the request waits for: it must not complete it.
            msg_type = self.rng.choice(("bogus_reply", "kernel_info_reply", "complete_reply"))
            message = s.message(msg_type, {"status": "ok"}, parent=request)
            return self._authentic("other_reply", "shell", message, routed=1)
        if pick == 6:
            return self._comm(request, routed=1, malformed=self.rng.random() < 0.5)
        if pick == 7:
            return self._malformed_at_ingress(request)
        if pick == 8:
            # The kernel would wait forever in input(): answered, and counted.
            message = s.message("input_request", {"prompt": 5}, parent=request)
            return self._authentic(
                "malformed_input_request", "stdin", message, routed=1, dropped_malformed=1
            )
        if pick == 9:
            return self.unsolicited()
        return self.invalid()

    def oversized_text(self, limit: int) -> str:
        return "x" * self.rng.randint(2 * limit, 4 * limit)
