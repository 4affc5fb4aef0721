"""Standard Jupyter frontends for tests: jupyter_client's BlockingKernelClient.

Not a test module: imported as ``frontends``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from jupyter_client.blocking import BlockingKernelClient

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread of its own, its event loop closed after.

    For jupyter_client's blocking calls: they run an asyncio loop that
    jupyter_core keeps in a context variable, which a worker thread would
    inherit from the test (and share with other threads running), and which
    nothing closes (a ResourceWarning in whichever test collects it).
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:
            failure.append(e)
        finally:
            with contextlib.suppress(RuntimeError):  # no loop was made
                asyncio.get_event_loop_policy().get_event_loop().close()
            asyncio.set_event_loop(None)

    thread = threading.Thread(target=run, name=f"jupyter_client {id(fn):x}", daemon=True)
    thread.start()
    await anyio.to_thread.run_sync(thread.join)
    if failure:
        raise failure[0]
    return result[0]


async def frontend(connection_file: Path, work: Callable[[BlockingKernelClient], T]) -> T:
    """A jupyter_client frontend attached to ``connection_file`` doing ``work`` (in a thread)."""

    def attach() -> T:
        client = BlockingKernelClient(connection_file=str(connection_file))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=30)
            return work(client)
        finally:
            client.stop_channels()

    return await in_thread(attach)


def stdout_of(client: BlockingKernelClient, code: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    reply = client.execute_interactive(code, output_hook=hook, timeout=30, **kwargs)
    return reply, "".join(out)
