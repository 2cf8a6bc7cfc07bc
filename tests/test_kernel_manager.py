"""The report kernel manager and client: jupyter_client's behaviour, without its fixed idle waits.

Real kernels, started the ordinary way (the fork server has its own tests), so these hold on any
platform the batch runs on. The guards on the jupyter_client internals these classes use are in
tests/test_speedups.py. Tests taking ``speedups_on`` run with the speed-ups on and off (jupyter_client's
stock manager and client).
"""

from __future__ import annotations

import asyncio
import sys
from queue import Empty

import pytest
import zmq

from auditreport.execution import kernel_manager as report_km


@pytest.fixture
def started(start_kernel):
    """A kernel from ReportKernelManager and a started (not yet ready) client on it."""
    km = start_kernel(report_km.ReportKernelManager)
    kc = km.client()
    kc.start_channels()
    yield km, kc
    kc.stop_channels()


def test_client_is_ready_without_waiting_for_iopub_to_fall_silent(started):
    km, kc = started
    assert isinstance(kc, report_km.ReportKernelClient)
    # A socket that connects before the kernel has bound its own tries again within milliseconds.
    for channel in (kc.shell_channel, kc.iopub_channel, kc.control_channel):
        assert channel.socket.getsockopt(zmq.RECONNECT_IVL) == report_km.RECONNECT_MS
    waits = []
    get_iopub = kc.iopub_channel.get_msg

    async def recording(timeout=None):
        try:
            message = await get_iopub(timeout=timeout)
        except Empty:
            waits.append((timeout, None))
            raise
        waits.append((timeout, message["msg_type"]))
        return message

    kc.iopub_channel.get_msg = recording

    async def ready_then_run():
        await kc.wait_for_ready(timeout=60)
        kc.iopub_channel.get_msg = get_iopub
        reply = await kc.execute_interactive("print(6 * 7)", timeout=60,
                                             output_hook=lambda m: printed.append(m["content"].get("text", "")))
        return reply

    printed: list[str] = []
    reply = asyncio.run(ready_then_run())
    # One wait for IOPub to prove connected; everything after that only takes what has already arrived.
    first_message = next(i for i, (_, kind) in enumerate(waits) if kind is not None)
    assert all(timeout == 0 for timeout, _ in waits[first_message + 1:]), waits
    assert waits[-1] == (0, None)  # drained
    # Leftover start-up messages do not confuse the first execution.
    assert reply["content"]["status"] == "ok" and "".join(printed).strip() == "42"


def test_client_is_ready_when_the_kernel_answers_after_several_requests(started, monkeypatch):
    """A kernel slower to start than the retry interval answers earlier requests first; any answer will do."""
    km, kc = started
    monkeypatch.setattr(report_km, "KERNEL_INFO_RETRY", 0.001)
    sent = []
    ask = kc.kernel_info
    monkeypatch.setattr(kc, "kernel_info", lambda: sent.append(ask()) or sent[-1])
    asyncio.run(kc.wait_for_ready(timeout=30))  # waiting for one's own answer chased it until this ran out
    assert len(sent) > 1


def test_client_says_when_the_kernel_died_before_answering(started):
    from jupyter_core.utils import run_sync

    km, kc = started
    run_sync(km.shutdown_kernel)(now=True)
    with pytest.raises(RuntimeError, match="died before replying"):
        asyncio.run(kc.wait_for_ready(timeout=30))


def test_manager_sees_a_killed_kernel_go_without_sleeping_a_tenth_of_a_second(started, monkeypatch):
    from jupyter_core.utils import run_sync

    km, _ = started
    sleeps = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay, *args, **kwargs):
        if sys._getframe(1).f_code.co_name == "_async_wait":  # not the provisioner's own waits
            sleeps.append(delay)
        return await real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(report_km.asyncio, "sleep", recording_sleep)
    run_sync(km.shutdown_kernel)(now=True)
    assert not km.has_kernel
    # jupyter_client's own wait sleeps [0.1, 0.1, ...]; a kernel already gone needs none.
    assert sleeps == [min(0.002 * 2 ** i, 0.1) for i in range(len(sleeps))]


def test_a_report_kernel_answers_runs_a_cell_and_is_gone_after_shutdown(start_kernel, speedups_on):
    """The manager report jobs get (kernel_forkserver.kernel_manager), speed-ups on or off."""
    import psutil
    from jupyter_core.utils import run_sync

    from auditreport.execution import kernel_forkserver as kf

    try:
        km = start_kernel(kf.kernel_manager)
        assert isinstance(km, report_km.ReportKernelManager) is speedups_on
        kc = km.client()
        assert isinstance(kc, report_km.ReportKernelClient) is speedups_on
        printed: list[str] = []

        async def ready_then_run():
            await kc.wait_for_ready(timeout=60)
            return await kc.execute_interactive("print(6 * 7)", timeout=60,
                                                output_hook=lambda m: printed.append(m["content"].get("text", "")))

        kc.start_channels()
        try:
            reply = asyncio.run(ready_then_run())
        finally:
            kc.stop_channels()
        assert reply["content"]["status"] == "ok" and "".join(printed).strip() == "42"
        pid = km.provisioner.pid
        run_sync(km.shutdown_kernel)(now=True)
        assert not km.has_kernel
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        kf.stop_zygote()
