"""Kernels on a real Jupyter Kernel Gateway (``jupyter kernelgateway``, no mocks).

The gateway serves the same REST API and websocket as Jupyter Server (it is
built on it), with its own token check: the tests that matter for a remote
kernel run here again, against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from jupyter_servers import RunningServer
from test_actions import (
    test_comm_round_trip_with_a_target_in_the_kernel,
    test_error_is_a_value_or_raises_when_asked,
    test_input_answered_by_a_callback,
    test_timeout_interrupts_and_leaves_the_kernel_usable,
    test_update_display_reaches_every_output_showing_it,
)
from test_remote import (
    test_a_dropped_websocket_reconnects_and_loses_no_output,
    test_buffers_both_ways_on_v1,
    test_interrupt_goes_through_the_server,
    test_restart_goes_through_the_server,
)

import sidecar

pytestmark = [pytest.mark.anyio, pytest.mark.kernel]

__all__ = [  # run here against a kernel on the gateway
    "test_a_dropped_websocket_reconnects_and_loses_no_output",
    "test_buffers_both_ways_on_v1",
    "test_comm_round_trip_with_a_target_in_the_kernel",
    "test_error_is_a_value_or_raises_when_asked",
    "test_input_answered_by_a_callback",
    "test_interrupt_goes_through_the_server",
    "test_restart_goes_through_the_server",
    "test_timeout_interrupts_and_leaves_the_kernel_usable",
    "test_update_display_reaches_every_output_showing_it",
]


@pytest.fixture(scope="module")
async def kernel(
    anyio_backend: str, kernel_gateway: RunningServer
) -> AsyncIterator[sidecar.Kernel]:
    """One kernel on the gateway, shared by the tests of this module, per backend."""
    async with sidecar.connect_server(kernel_gateway.url, token=kernel_gateway.token) as k:
        yield k


async def test_a_wrong_token_is_refused_at_once(kernel_gateway: RunningServer) -> None:
    with pytest.raises(sidecar.TokenRejected):
        async with sidecar.connect_server(kernel_gateway.url, token="wrong"):
            pass


async def test_a_kernel_we_start_is_shut_down_on_exit(kernel_gateway: RunningServer) -> None:
    async with sidecar.connect_server(kernel_gateway.url, token=kernel_gateway.token) as kernel:
        out = sidecar.Outputs()
        await kernel.execute("print('on the gateway')", handlers=[out])
        assert out.text() == "on the gateway\n"
