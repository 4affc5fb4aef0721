"""The wire codec: encoding and decoding one Jupyter message, against jupyter_client.

Run ``python -m benchmarks.bench_wire`` (``--json`` for machine-readable output).

Three messages: an ``execute_request`` (code ``x = 1``), an iopub ``stream``
(stdout, short text, with a parent header) and, for decoding only, a ~100 KB
iopub ``display_data`` (a base64 PNG-like string in ``data``).  All signed with
HMAC-SHA256.

encode
    build the header, sign, serialize to frames.  sidecar is
    ``Session.serialize(Session.message(...))`` with a content struct;
    jupyter_client is ``Session.serialize(Session.msg(...))`` with a dict.
decode
    verify, deserialize and decode the content.  sidecar is
    ``Session.deserialize(frames).content``; "sidecar, lazy" skips ``.content``
    (what the router pays for a message nobody reads); jupyter_client is
    ``Session.deserialize(Session.feed_identities(frames)[1])``.
floors
    bare code with a prepared HMAC (``.copy()`` per message) and plain dicts,
    through ``json`` and through ``msgspec.json``.  No validation, no replay
    check, and the header date is a constant: lower bounds, not clients.

Both sessions refuse replayed signatures, so every decoder is fed a pool of
distinct messages and gets a fresh session (an empty replay history) each rep.
The pool is made by a jupyter_client session playing the kernel, as ipykernel
would send it, with one identity frame (a routing id or iopub topic) in front.
Content is packed once per pool and shared: only headers and signatures differ.

Caveats: neither replay history fills up here.  Past 65,536 messages both
start forgetting old signatures, and jupyter_client's culling (a sort and a
random sample of its whole history) costs far more than our FIFO, so
steady-state decode ratios are higher than these.  jupyter_client packs with
``json``, or with ``orjson`` if that is installed (the table says which).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from jupyter_client import session as jupyter_session_module
from jupyter_client.session import Session as JupyterSession

from benchmarks._harness import (
    Table,
    Timing,
    emit,
    environment,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    measure_many,
    noise_note,
    parse_args,
)
from sidecar.wire import DELIM, ExecuteRequest, Header, Message, Session, Stream

KEY = b"a0436f6c-1916-498b-8eb9-e81ab9368e84"  # a connection file's uuid4 key
SCHEME = "hmac-sha256"
SMALL_POOL = 2000
LARGE_POOL = 250
FLOOR_DATE = "2025-01-01T00:00:00.000000Z"

DECODE_TARGET = 5.0
ENCODE_TARGET = 2.5

OURS = "sidecar"
OURS_LAZY = "sidecar, lazy"
JUPYTER = "jupyter_client"
FLOOR_JSON = "floor: hmac + json"
FLOOR_MSGSPEC = "floor: hmac + msgspec"

Frames = list[bytes]
Setup = Callable[[], Callable[[], object]]


def _png_like(size: int) -> str:
    raw = b"\x89PNG\r\n\x1a\n" + random.Random(0).randbytes(size * 3 // 4 - 8)
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Case:
    msg_type: str
    content: dict[str, Any]
    struct: Any  # our content struct, for encoding
    identity: bytes
    has_parent: bool
    pool_size: int
    encode: bool


EXECUTE_CONTENT: dict[str, Any] = {
    "code": "x = 1",
    "silent": False,
    "store_history": True,
    "user_expressions": {},
    "allow_stdin": True,
    "stop_on_error": True,
}
STREAM_CONTENT: dict[str, Any] = {"name": "stdout", "text": "hello, world\n"}
DISPLAY_CONTENT: dict[str, Any] = {
    "data": {"image/png": _png_like(100_000), "text/plain": "<Figure size 640x480 with 1 Axes>"},
    "metadata": {"image/png": {"width": 640, "height": 480}},
    "transient": {},
}

CASES = [
    Case(
        "execute_request",
        EXECUTE_CONTENT,
        ExecuteRequest(code="x = 1"),
        identity=uuid.uuid4().hex.encode(),
        has_parent=False,
        pool_size=SMALL_POOL,
        encode=True,
    ),
    Case(
        "stream",
        STREAM_CONTENT,
        Stream(name="stdout", text="hello, world\n"),
        identity=b"stream.stdout",
        has_parent=True,
        pool_size=SMALL_POOL,
        encode=True,
    ),
    Case(
        "display_data",
        DISPLAY_CONTENT,
        None,
        identity=b"display_data",
        has_parent=True,
        pool_size=LARGE_POOL,
        encode=False,
    ),
]


def _jupyter_session(**kwargs: Any) -> JupyterSession:
    return JupyterSession(key=KEY, signature_scheme=SCHEME, **kwargs)


def _jupyter_decode(frames: Sequence[bytes | memoryview]) -> dict[str, Any]:
    session = _jupyter_session()
    return session.deserialize(session.feed_identities([bytes(f) for f in frames])[1])


# -- inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    pool: list[Frames]  # distinct signed messages to decode
    our_parent: Header | None  # the parent header, as each side holds it
    jupyter_parent: dict[str, Any] | None
    dict_parent: dict[str, Any] | None


def make_inputs(case: Case) -> Inputs:
    kernel = _jupyter_session(username="kernel")
    request = kernel.serialize(kernel.msg("execute_request", EXECUTE_CONTENT))
    our_parent = jupyter_parent = dict_parent = None
    if case.has_parent:
        our_parent = Session(KEY, SCHEME).deserialize(request).header
        jupyter_parent = _jupyter_decode(request)["header"]
        dict_parent = json.loads(request[2])
    packed = kernel.pack(case.content)
    pool = []
    for _ in range(case.pool_size):
        msg = kernel.msg(case.msg_type, parent=jupyter_parent)
        msg["content"] = packed
        pool.append(kernel.serialize(msg, ident=[case.identity]))
    return Inputs(pool, our_parent, jupyter_parent, dict_parent)


def check(case: Case, inputs: Inputs) -> None:
    """Every implementation must agree on what it decodes and encodes."""
    frames = inputs.pool[0]
    ours = Session(KEY, SCHEME).deserialize(frames)
    assert msgspec.to_builtins(ours.content) == case.content, ours.content
    theirs = _jupyter_decode(frames)
    assert theirs["content"] == case.content
    assert ours.parent_id == (theirs["parent_header"] or {}).get("msg_id")
    if case.encode:
        session = Session(KEY, SCHEME)
        sent = session.serialize(
            session.message(case.msg_type, case.struct, parent=inputs.our_parent)
        )
        back = _jupyter_decode(sent)
        assert back["content"] == case.content, back["content"]
        assert back["parent_header"].get("msg_id") == ours.parent_id


# -- encode ------------------------------------------------------------------------


def encode_ours(case: Case, inputs: Inputs) -> Setup:
    msg_type, content, parent, n = case.msg_type, case.struct, inputs.our_parent, case.pool_size

    def setup() -> Callable[[], None]:
        session = Session(KEY, SCHEME)
        message, serialize = session.message, session.serialize

        def run() -> None:
            for _ in range(n):
                serialize(message(msg_type, content, parent=parent))

        return run

    return setup


def encode_jupyter(case: Case, inputs: Inputs) -> Setup:
    msg_type, content, parent, n = (
        case.msg_type,
        case.content,
        inputs.jupyter_parent,
        case.pool_size,
    )

    def setup() -> Callable[[], None]:
        session = _jupyter_session()
        msg, serialize = session.msg, session.serialize

        def run() -> None:
            for _ in range(n):
                serialize(msg(msg_type, content, parent=parent))

        return run

    return setup


def encode_floor(dumps: Callable[[Any], bytes]) -> Callable[[Case, Inputs], Setup]:
    def factory(case: Case, inputs: Inputs) -> Setup:
        msg_type, content, parent, n = (
            case.msg_type,
            case.content,
            inputs.dict_parent,
            case.pool_size,
        )

        def setup() -> Callable[[], None]:
            prepared = hmac.new(KEY, digestmod=hashlib.sha256)
            session = uuid.uuid4().hex
            prefix = f"{session}_"

            def run() -> None:
                for i in range(n):
                    header = {
                        "msg_id": f"{prefix}{i}",
                        "msg_type": msg_type,
                        "username": "floor",
                        "session": session,
                        "date": FLOOR_DATE,
                        "version": "5.4",
                    }
                    parts = (
                        dumps(header),
                        b"{}" if parent is None else dumps(parent),
                        b"{}",
                        dumps(content),
                    )
                    mac = prepared.copy()
                    for part in parts:
                        mac.update(part)
                    [DELIM, mac.hexdigest().encode(), *parts]

            return run

        return setup

    return factory


# -- decode ------------------------------------------------------------------------


def decode_ours(*, read_content: bool) -> Callable[[Case, Inputs], Setup]:
    def factory(case: Case, inputs: Inputs) -> Setup:
        pool = inputs.pool

        def setup() -> Callable[[], None]:
            deserialize = Session(KEY, SCHEME).deserialize

            def run() -> None:
                for frames in pool:
                    _ = deserialize(frames).content

            def run_lazy() -> None:
                for frames in pool:
                    deserialize(frames)

            return run if read_content else run_lazy

        return setup

    return factory


def decode_jupyter(case: Case, inputs: Inputs) -> Setup:
    pool = inputs.pool

    def setup() -> Callable[[], None]:
        session = _jupyter_session()
        feed, deserialize = session.feed_identities, session.deserialize

        def run() -> None:
            for frames in pool:
                deserialize(feed(frames)[1])

        return run

    return setup


def decode_floor(loads: Callable[[bytes], Any]) -> Callable[[Case, Inputs], Setup]:
    def factory(case: Case, inputs: Inputs) -> Setup:
        pool = inputs.pool

        def setup() -> Callable[[], None]:
            prepared = hmac.new(KEY, digestmod=hashlib.sha256)
            compare = hmac.compare_digest

            def run() -> None:
                for frames in pool:
                    at = frames.index(DELIM)
                    signature, header, parent, metadata, content = frames[at + 1 : at + 6]
                    mac = prepared.copy()
                    mac.update(header)
                    mac.update(parent)
                    mac.update(metadata)
                    mac.update(content)
                    if not compare(mac.hexdigest().encode(), signature):
                        raise ValueError("bad signature")
                    loads(header)
                    loads(parent)
                    loads(metadata)
                    loads(content)

            return run

        return setup

    return factory


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


ENCODERS: dict[str, Callable[[Case, Inputs], Setup]] = {
    OURS: encode_ours,
    JUPYTER: encode_jupyter,
    FLOOR_JSON: encode_floor(_json_dumps),
    FLOOR_MSGSPEC: encode_floor(msgspec.json.Encoder().encode),
}
DECODERS: dict[str, Callable[[Case, Inputs], Setup]] = {
    OURS: decode_ours(read_content=True),
    OURS_LAZY: decode_ours(read_content=False),
    JUPYTER: decode_jupyter,
    FLOOR_JSON: decode_floor(json.loads),
    FLOOR_MSGSPEC: decode_floor(msgspec.json.decode),
}


# -- eager vs lazy -----------------------------------------------------------------

_dict_decode = msgspec.json.Decoder(dict[str, Any]).decode


def _strategy(body: Callable[[Message], object]) -> Callable[[Case, Inputs], Setup]:
    def factory(case: Case, inputs: Inputs) -> Setup:
        pool = inputs.pool

        def setup() -> Callable[[], None]:
            deserialize = Session(KEY, SCHEME).deserialize

            def run() -> None:
                for frames in pool:
                    body(deserialize(frames))

            return run

        return setup

    return factory


LAZY_UNREAD = "lazy, never read (router)"
EAGER_TYPED = "eager typed: content + metadata"
STRATEGIES: dict[str, Callable[[Case, Inputs], Setup]] = {
    LAZY_UNREAD: _strategy(lambda m: None),
    "lazy, content read": _strategy(lambda m: m.content),
    EAGER_TYPED: _strategy(lambda m: (m.content, m.metadata)),
    "eager dicts: content + metadata": _strategy(
        lambda m: (_dict_decode(m.raw_content()), _dict_decode(m.raw_metadata()))
    ),
}


# -- running -----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    message: str
    operation: str
    implementation: str
    timing: Timing
    reference: str  # the implementation the ratio compares with
    ratio: float  # this row's time / the reference row's time

    def as_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "operation": self.operation,
            "implementation": self.implementation,
            **self.timing.as_json(),
            "reference": self.reference,
            "ratio_vs_reference": round(self.ratio, 3),
        }


def run_group(
    case: Case,
    inputs: Inputs,
    operation: str,
    impls: dict[str, Callable[[Case, Inputs], Setup]],
    reference: str,
    repeat: int,
) -> list[Result]:
    setups = {name: factory(case, inputs) for name, factory in impls.items()}
    timings = measure_many(setups, case.pool_size, repeat=repeat)
    ref = timings[reference].us
    return [
        Result(case.msg_type, operation, name, t, reference, t.us / ref)
        for name, t in timings.items()
    ]


def rows(results: Sequence[Result]) -> list[list[str]]:
    return [
        [
            r.message,
            r.operation,
            r.implementation,
            fmt_us(r.timing.us),
            fmt_rate(r.timing.per_s),
            fmt_ratio(r.ratio),
        ]
        for r in results
    ]


def targets(results: Sequence[Result]) -> list[dict[str, Any]]:
    out = []
    for operation, goal in (("decode", DECODE_TARGET), ("encode", ENCODE_TARGET)):
        for case in CASES:
            peer = [
                r
                for r in results
                if (r.message, r.operation, r.implementation) == (case.msg_type, operation, JUPYTER)
            ]
            if not peer:
                continue
            gated = case.pool_size == SMALL_POOL
            out.append(
                {
                    "message": case.msg_type,
                    "operation": operation,
                    "target": goal if gated else None,
                    "speedup": round(peer[0].ratio, 3),
                    "pass": peer[0].ratio >= goal if gated else None,
                }
            )
    return out


def target_lines(found: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for t in found:
        head = f"target: {t['operation']} {t['message']}: {t['speedup']:.2f}x jupyter_client"
        if t["target"] is None:
            lines.append(f"{head} (not gated: HMAC over 100 KB dominates both sides)")
        else:
            verdict = "PASS" if t["pass"] else "MISS"
            lines.append(f"{head} (>= {t['target']:g}x) {verdict}")
    return lines


def _packer_note() -> str:
    packer = "orjson" if jupyter_session_module.has_orjson else "json"
    return f"jupyter_client packs and unpacks with {packer} here (it uses orjson when installed)."


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])
    results: list[Result] = []
    strategies: list[Result] = []
    for case in CASES:
        inputs = make_inputs(case)
        check(case, inputs)
        if case.encode:
            results += run_group(case, inputs, "encode", ENCODERS, OURS, args.repeat)
        results += run_group(case, inputs, "decode", DECODERS, OURS, args.repeat)
        strategies += run_group(case, inputs, "decode", STRATEGIES, LAZY_UNREAD, args.repeat)
    results.sort(key=lambda r: r.operation == "decode")  # encode rows first, case order kept

    found = targets(results)
    main_table = Table(
        "Wire codec, per message (HMAC-SHA256; median of "
        f"{args.repeat} reps; ratio = row time / sidecar time, >1 means sidecar is faster)",
        ["message", "operation", "implementation", "µs/msg", "msgs/s", "vs ours"],
        "<<<>>>",
        rows(results),
        notes=[*target_lines(found), _packer_note(), *noise_note([r.timing for r in results])],
    )
    lazy = {(r.message, r.implementation): r.timing.us for r in strategies}
    saved = [
        f"{case.msg_type}: a message nobody reads costs {lazy[case.msg_type, LAZY_UNREAD]:.2f} µs "
        f"lazily instead of {lazy[case.msg_type, EAGER_TYPED]:.2f} µs "
        "decoded eagerly"
        for case in CASES
    ]
    strategy_table = Table(
        "Eager vs lazy content decoding in sidecar.wire.Session.deserialize "
        "(ratio = row time / lazy-unread time)",
        ["message", "operation", "strategy", "µs/msg", "msgs/s", "vs lazy"],
        "<<<>>>",
        rows(strategies),
        notes=[*saved, *noise_note([r.timing for r in strategies])],
    )
    emit(
        "wire",
        [main_table, strategy_table],
        {
            "environment": environment("sidecar", "msgspec", "jupyter_client", "orjson"),
            "config": {
                "repeat": args.repeat,
                "pool_sizes": {c.msg_type: c.pool_size for c in CASES},
                "signature_scheme": SCHEME,
                "display_data_content_bytes": len(_jupyter_session().pack(DISPLAY_CONTENT)),
            },
            "results": [r.as_json() for r in results],
            "targets": found,
            "eager_vs_lazy": [r.as_json() for r in strategies],
        },
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
