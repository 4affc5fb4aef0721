"""A pool of kernels started ahead: :func:`launch_pool` and :class:`KernelPool`.

A kernel start costs more than a short notebook's cells (ipykernel: about
0.4 s of wall time and 0.3 s of its CPU).  A pool keeps ``size`` kernels
started ahead and hands one out per ``async with pool.kernel()``; while it is
in use, another starts in the background, so a batch of short runs pays the
starts in parallel with its cells instead of in series.

Invariants, which the tests hold the pool to:

1. Every kernel lives inside one *keeper* task of the pool's task group: the
   keeper enters :func:`~sidecar.launch` (or the ``start`` given) and leaves it,
   so a kernel's process is stopped by the same code, shielded, whatever is
   cancelled, as one launched directly.
2. A kernel is handed out at most once, unless the pool reuses kernels: then
   it comes back, is reset (``%reset -f``, the working directory restored),
   and only then offered again.  One that cannot be reset is replaced.
3. The pool counts ``size`` kernels: without reuse, those starting or ready
   (one handed out stops counting, and its replacement starts at once); with
   reuse, every kernel it has (starting, ready, handed out or resetting).
4. A ready kernel that dies is dropped and replaced; a handed-out one that
   dies is the user's to notice (its requests fail with
   :class:`~sidecar.KernelDied`), and is replaced when it comes back.
5. A kernel that fails to start is not retried in a loop: its error goes to
   the next ``pool.kernel()``, which raises it, and only then is the slot
   started again.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, final

import anyio
import anyio.abc
import msgspec

from .._exceptions import ExecutionError, KernelError
from .._task_groups import open_task_group
from ..kernel._kernelspec import get_kernelspec
from ._kernel import Kernel
from ._launch import launch

__all__ = ["KernelPool", "PoolStatistics", "launch_pool"]

log = logging.getLogger("sidecar.pool")

_DEAD: Final = frozenset({"dead", "closed"})

# Run silently (no execution count, no history).  ``%reset -f`` empties the
# user namespace and the output cache; the counters go back to where a fresh
# kernel has them, so a reused kernel numbers its cells from 1.
_RESET: Final = """\
def _sidecar_reset(ip=get_ipython()):
    {chdir}
    ip.run_line_magic("reset", "-f")
    ip.execution_count = 1
    if getattr(ip, "kernel", None) is not None:
        ip.kernel.execution_count = 0
_sidecar_reset()
"""
_CHDIR: Final = "__import__('os').chdir({cwd!r})"


@final
class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`KernelPool.statistics` returns: the pool at one moment."""

    size: int
    ready: int
    """Kernels ready to be handed out."""
    starting: int
    """Kernels being started."""
    in_use: int
    """Kernels handed out and not back yet."""
    started: int
    """Kernels started since the pool opened (those that failed included)."""
    handed_out: int
    """Times a kernel was handed out."""
    reset: int
    """Times a kernel came back and was reset for reuse."""
    replaced: int
    """Ready kernels that died, and kernels that could not be reset, replaced."""


class _Slot:
    """One kernel of the pool, as its keeper task sees it."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.idle = False
        self.back = anyio.Event()
        """Set when the kernel comes back, dies while ready, or the pool closes."""

    def dead(self) -> bool:
        return self.kernel.state in _DEAD

    def on_state(self, before: str, after: str) -> None:
        if after in _DEAD and self.idle:
            self.back.set()


@final
class KernelPool:
    """Kernels started ahead, handed out one per ``async with pool.kernel()``.

    Get one from :func:`launch_pool`.  All of its kernels are stopped when the
    ``async with launch_pool(...)`` block is left, handed-out ones included:
    a kernel from :meth:`kernel` is valid until its own block ends or the
    pool closes, whichever is first.
    """

    def __init__(
        self,
        start: Callable[[], AbstractAsyncContextManager[Kernel]],
        task_group: anyio.abc.TaskGroup,
        *,
        size: int,
        reuse: bool,
        cwd: str | None,
        local: bool,
        reset_timeout: float,
    ) -> None:
        self._start = start
        self._tg = task_group
        self._size = size
        self._reuse = reuse
        self._home = cwd
        self._local = local
        self._reset_timeout = reset_timeout
        self._send, self._receive = anyio.create_memory_object_stream[_Slot | BaseException](
            math.inf
        )
        self._slots: set[_Slot] = set()
        self._counted = 0
        self._starting = 0
        self._errors = 0
        self._closed = False
        self._stats = {"started": 0, "handed_out": 0, "reset": 0, "replaced": 0}

    @property
    def size(self) -> int:
        """How many kernels the pool keeps (see :func:`launch_pool`)."""
        return self._size

    @property
    def reuse(self) -> bool:
        """Whether a kernel that comes back is reset and handed out again."""
        return self._reuse

    def statistics(self) -> PoolStatistics:
        """The pool's counts at this moment."""
        ready = sum(1 for s in self._slots if s.idle and not s.dead())
        in_use = sum(1 for s in self._slots if not s.idle and not s.back.is_set())
        return PoolStatistics(
            size=self._size, ready=ready, starting=self._starting, in_use=in_use, **self._stats
        )

    # -- handing out -------------------------------------------------------------

    @asynccontextmanager
    async def kernel(self, *, cwd: str | os.PathLike[str] | None = None) -> AsyncIterator[Kernel]:
        """A ready kernel for the block; waits for one if none is ready.

        Without reuse, the kernel is shut down when the block is left (in
        the background) and never handed out again; with reuse it is reset
        and offered again.

        Args:
            cwd: run the code in this directory: the kernel's working
                directory is changed (``os.chdir``, silently, before the
                block) since it was started elsewhere.  Python kernels only.

        Raises:
            KernelStartError: the kernel started for this hand-out failed
                (the pool tries a new one for the next).
            ExecutionError: the kernel could not change to ``cwd``.
            anyio.ClosedResourceError: the pool is closed.
        """
        slot = await self._take()
        try:
            if cwd is not None:
                await slot.kernel.execute(
                    _CHDIR.format(cwd=_absolute(cwd) if self._local else os.fspath(cwd)),
                    silent=True,
                    store_history=False,
                    raise_on_error=True,
                    timeout=self._reset_timeout,
                )
            yield slot.kernel
        finally:
            slot.back.set()

    async def _take(self) -> _Slot:
        while True:
            try:
                item = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise anyio.ClosedResourceError("the kernel pool is closed") from None
            if isinstance(item, BaseException):
                self._errors -= 1
                self._fill()
                raise item
            if item.dead() or item.back.is_set():
                continue
            item.idle = False
            self._stats["handed_out"] += 1
            if not self._reuse:
                self._counted -= 1
                self._fill()
            return item

    # -- keeping -------------------------------------------------------------------

    def _fill(self) -> None:
        """Start kernels until the pool counts ``size`` (not while an error waits)."""
        while not self._closed and self._errors == 0 and self._counted < self._size:
            self._counted += 1
            self._starting += 1
            self._stats["started"] += 1
            self._tg.start_soon(self._keep)

    async def _keep(self) -> None:
        """Start one kernel, offer it, and stop it when it is done with."""
        counted = True
        cancelled = False
        slot: _Slot | None = None
        try:
            async with self._start() as kernel:
                self._starting -= 1
                slot = _Slot(kernel)
                self._slots.add(slot)
                with kernel.on_state_change(slot.on_state):
                    while await self._offer(slot):
                        pass
                counted = slot.idle or self._reuse
        except (KernelError, OSError, TimeoutError) as e:
            if slot is None:
                self._starting -= 1
                if not self._closed:
                    # Given to the next taker; the slot restarts once taken.
                    self._errors += 1
                    self._counted -= 1
                    counted = False
                    self._send.send_nowait(e)
                    return
            log.warning("a pooled kernel failed: %s", e)
        except anyio.get_cancelled_exc_class():
            # The pool is being cancelled: a replacement would only be
            # cancelled in turn (and replaced again, until the pool closes).
            cancelled = True
            raise
        finally:
            if slot is not None:
                self._slots.discard(slot)
            if counted:
                self._counted -= 1
            if not cancelled:
                self._fill()

    async def _offer(self, slot: _Slot) -> bool:
        """Offer the kernel until it comes back; whether to offer it again."""
        if self._closed or slot.dead():
            return False
        slot.idle = True
        self._send.send_nowait(slot)
        # Shielded: a cancellation around the pool must not stop a kernel
        # that is still in use (the user's block is cancelled too, and its
        # execute interrupts the kernel and waits for the cell to end).  The
        # pool's exit sets ``back`` for every slot, after the user's blocks.
        with anyio.CancelScope(shield=True):
            await slot.back.wait()
        if slot.idle:  # it died while ready, or the pool is closing
            if slot.dead() and not self._closed:
                self._stats["replaced"] += 1
            return False
        if not self._reuse or self._closed:
            return False
        if slot.dead() or not await self._reset(slot.kernel):
            self._stats["replaced"] += 1
            return False
        self._stats["reset"] += 1
        slot.back = anyio.Event()
        return True

    async def _reset(self, kernel: Kernel) -> bool:
        kernel.handlers.clear()
        try:
            await kernel.execute(
                _RESET.format(
                    chdir="pass" if self._home is None else _CHDIR.format(cwd=self._home)
                ),
                silent=True,
                store_history=False,
                raise_on_error=True,
                timeout=self._reset_timeout,
            )
        except (KernelError, ExecutionError, TimeoutError) as e:
            log.warning("a pooled kernel could not be reset, replacing it: %s", e)
            return False
        return True

    def _close(self) -> None:
        self._closed = True
        self._send.close()
        self._receive.close()
        for slot in list(self._slots):
            slot.back.set()


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


@asynccontextmanager
async def launch_pool(
    kernel_name: str = "python3",
    *,
    size: int = 2,
    reuse: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_arguments: Sequence[str] = (),
    startup_timeout: float = 60.0,
    shutdown_timeout: float = 5.0,
    reset_timeout: float = 10.0,
    start: Callable[[], AbstractAsyncContextManager[Kernel]] | None = None,
) -> AsyncIterator[KernelPool]:
    """Keep ``size`` kernels started ahead, and hand them out.

    ::

        async with sidecar.launch_pool("python3", size=4) as pool:
            async with pool.kernel() as kernel:
                await kernel.execute("print(1)")

    The kernels start in the background at once, each as :func:`launch`
    starts one.  Without ``reuse`` a handed-out kernel is never handed out
    again: when its block ends it is shut down, and a new one has already
    started in its place, so ``size`` kernels are always ready or starting.
    Leaving the pool's block stops every kernel, shielded from cancellation,
    and leaves no process behind.

    With ``reuse=True`` the pool has ``size`` kernels in all, and a kernel that
    comes back is reset and handed out again: ``%reset -f`` (the user
    namespace and output cache are emptied), the execution count set back to
    1, the working directory restored, :attr:`Kernel.handlers` emptied.  It is
    much faster than a new kernel, and *not* the same: modules stay imported
    (``sys.modules``; importing again does not run them again), and every
    global side effect stays: environment variables, ``sys.path``, monkey
    patches, threads, open files, logging and warnings configuration,
    matplotlib's settings, comm targets.  Reuse suits runs of trusted code
    that does not depend on a pristine interpreter; it needs an IPython
    kernel.

    Args:
        kernel_name: the kernelspec.
        size: kernels kept started ahead (with ``reuse``: kernels in all).
        reuse: reset kernels that come back and hand them out again.
        cwd: the kernels' working directory (default: ours); a hand-out can
            run elsewhere with ``pool.kernel(cwd=...)``.  With ``start``, a
            directory on the kernels' machine that a reset returns to
            (default: none, a reset leaves the directory alone).
        env: as for :func:`launch`.
        extra_arguments: as for :func:`launch`.
        startup_timeout: as for :func:`launch`.
        shutdown_timeout: as for :func:`launch`.
        reset_timeout: seconds the reset (and the change of directory at a
            hand-out) may take; a kernel that takes longer is replaced.
        start: instead of launching, start each kernel with this (a function
            returning an async context manager of a :class:`Kernel`, e.g.
            ``functools.partial(sidecar.connect_server, url,
            kernel_name="python3")`` for kernels on a Jupyter Server); the
            other launch arguments are then ignored, and ``cwd`` in
            ``pool.kernel(cwd=...)`` is a path on the kernels' machine,
            passed as given.

    Raises:
        NoSuchKernel: no kernelspec of that name (at once).
        ValueError: ``size`` is below 1.
    """
    if size < 1:
        raise ValueError(f"a kernel pool needs size >= 1, not {size}")
    # Where a reset kernel returns to.  A kernel from ``start`` may be on
    # another machine, where our working directory means nothing: it stays
    # where it is, unless ``cwd`` says otherwise.
    if start is not None:
        home = None if cwd is None else os.fspath(cwd)
    else:
        home = _absolute(cwd if cwd is not None else os.curdir)
    if start is None:
        get_kernelspec(kernel_name)

        def launcher() -> AbstractAsyncContextManager[Kernel]:
            return launch(
                kernel_name,
                cwd=home,
                env=env,
                extra_arguments=extra_arguments,
                startup_timeout=startup_timeout,
                shutdown_timeout=shutdown_timeout,
            )

    async with open_task_group() as tg:
        pool = KernelPool(
            start or launcher,
            tg,
            size=size,
            reuse=reuse,
            cwd=home,
            local=start is None,
            reset_timeout=reset_timeout,
        )
        pool._fill()
        try:
            yield pool
        finally:
            # The keepers leave their launch blocks, which stop the kernels
            # shielded; those still starting are cancelled (launch cleans up).
            pool._close()
            if pool._starting:
                tg.cancel_scope.cancel()
