"""The kernel manager and client a report uses: jupyter_client's, without its fixed idle waits.

A report waits on a clock in three places while its kernel starts and stops, and its worker sits idle
for all three:

* connecting: the client connects its sockets as soon as the kernel process exists, before the kernel
  has bound its own; ZMQ then tries again only after its reconnect interval, 100 ms by default.
  :class:`ReportKernelClient`'s sockets try again after 5 ms;
* starting: after the kernel's ``kernel_info_reply`` the client keeps reading IOPub until nothing has
  come for 0.2 s, to throw away the kernel's start-up messages. Those are status messages that belong
  to no cell, and nbclient already ignores every IOPub message whose parent is not the request it is
  waiting on; so :class:`ReportKernelClient` drops what has arrived and goes on at once;
* stopping: after it kills the kernel the manager checks whether the process is gone and, since it
  never is yet, sleeps 0.1 s before looking again. A killed kernel is gone within milliseconds, so
  :class:`ReportKernelManager` looks again after 2 ms, then 4, 8... up to jupyter_client's interval.

The worker's core is free for another process meanwhile, but the worker itself has nothing to do: with
one worker per core that is idle time for the machine (benchmarks/RESULTS.md has the measured waits).

Both classes lean on jupyter_client internals (``AsyncKernelManager._async_wait``,
``KernelClient._context_default``, ``_handle_kernel_info_reply`` and ``_async_is_alive``), so report jobs
use them only with the speed-ups on (:mod:`auditreport.speedups`; otherwise jupyter_client's stock
``AsyncKernelManager`` and ``AsyncKernelClient``); ``tests/test_speedups.py`` fails when the pinned
jupyter_client no longer has one of them as used here.
"""

from __future__ import annotations

import asyncio
import time
from queue import Empty

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type, default

#: Milliseconds before a client socket tries again to reach a kernel that has not bound its sockets yet.
RECONNECT_MS = 5
#: Seconds to wait for the kernel_info reply before asking again (as jupyter_client).
KERNEL_INFO_RETRY = 1.0
#: Seconds to wait, after the reply, for the first IOPub message: proof that IOPub is connected.
IOPUB_CONNECTED = 0.2


class ReportKernelClient(AsyncKernelClient):
    """An ``AsyncKernelClient`` that is ready as soon as the kernel has answered and IOPub is connected."""

    @default("context")
    def _context_default(self) -> zmq.asyncio.Context:
        context = super()._context_default()
        # The client connects while the kernel is still starting, before it has bound its sockets; ZMQ
        # then tries again only after its reconnect interval, 100 ms by default.
        context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        return context

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        """Ask for kernel_info until the kernel answers; then check that IOPub is connected.

        As jupyter_client's own, except that IOPub is not read for a further 0.2 s of silence at the end.
        A message published before IOPub's subscription has taken effect is lost (ZMQ's "slow joiner"),
        which is why a reply is only accepted once the status messages of the request arrive on IOPub.
        """
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=KERNEL_INFO_RETRY)
            except Empty:
                reply = None
            # Any request's reply will do: a kernel slow to start answers the earlier requests first.
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:
                    await self.iopub_channel.get_msg(timeout=IOPUB_CONNECTED)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while True:  # what has already arrived: status messages of no cell
            try:
                await self.iopub_channel.get_msg(timeout=0)
            except Empty:
                break


class ReportKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` that hands out :class:`ReportKernelClient` and notices a kernel's end at once."""

    client_class = DottedObjectName(f"{__name__}.ReportKernelClient")
    client_factory = Type(klass=ReportKernelClient)

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Wait for the kernel process to end, looking after 2, 4, 8... ms (at most ``pollinterval``)."""
        delay = 0.002
        while await self._async_is_alive():
            await asyncio.sleep(delay)
            delay = min(2 * delay, pollinterval)
