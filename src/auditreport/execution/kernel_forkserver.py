"""Start report kernels by forking a pre-loaded "zygote" instead of running a new interpreter.

Every report runs in its own fresh kernel. Started the ordinary way, each of those
kernels is a new ``python -m ipykernel_launcher`` that spends most of its CPU
importing ipykernel, numpy, pandas, matplotlib and auditreport before it runs a
single cell; with a few hundred reports per batch that is a large share of the
batch (benchmarks/RESULTS.md). Here each worker process keeps one zygote: a small
server, started lazily, that imports all of that once and then waits on a Unix
socket. For each report the
zygote forks; the child sets up the kernel's working folder, environment and
output files exactly as ``jupyter_client`` would have, and runs
``ipykernel_launcher``. The child is still a new process that nothing else has run
in, so "each report in its own fresh kernel" holds: module state set by one
report's cells cannot be seen by the next.

Pieces:

* :func:`kernel_manager` returns the kernel manager that report jobs use:
  jupyter_client's stock ``AsyncKernelManager`` when the speed-ups are switched
  off (:mod:`auditreport.speedups`, ``AUDITREPORT_SPEEDUPS=0``), which also
  switches off the fork server; otherwise a manager that forks kernels, or
  starts them the ordinary way where forking is unsupported (not Linux, no
  ``os.pidfd_open``) or the kernelspec is not plain ``<this python> -m
  ipykernel_launcher ...``.
* :class:`ForkServerProvisioner` is the ``jupyter_client`` provisioner that asks
  the zygote for a kernel and manages it through a pidfd (the kernel is the
  zygote's child, not ours, so ``waitpid`` is not available). Whenever the zygote
  cannot give a kernel it starts one the ordinary way instead, for that report,
  and the next report gets a new zygote.
* :mod:`auditreport.execution.zygote` is the zygote itself.

The zygote exits when its worker does: it sees end-of-file on its control socket
(and, when started from the worker's main thread, gets ``PR_SET_PDEATHSIG``); an
``atexit`` hook in the worker stops it in an orderly way too.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from auditreport import speedups
from auditreport.execution.kernel_manager import ReportKernelManager
from auditreport.execution.zygote import MAX_MESSAGE

# What the zygote imports before it forks: the kernel itself and what every report notebook imports
# (numpy, pandas, matplotlib with the Agg backend, through the report sections).
# The ipykernel/IPython modules are the ones a kernel imports while it starts (its debugger brings
# debugpy); none of them starts a thread when imported.
PRELOAD: tuple[str, ...] = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
                            "IPython.core.debugger", "IPython.core.completerlib", "IPython.extensions.storemagic",
                            "sqlite3", "tornado.platform.asyncio", "tornado.queues",
                            "pyarrow.parquet", "auditreport.presentation.display",  # every report reads the bundle
                            "auditreport.presentation.provider_sections", "auditreport.presentation.national_sections",
                            "auditreport.presentation.survival_sections",
                            # and these, which the report code imports only when it first needs them (reading a
                            # Parquet file, drawing a chart, the data-quality labels)
                            "pyarrow.dataset", "matplotlib.backends.backend_agg", "auditreport.presentation.png",
                            "auditreport.analysis.quality")
READY_TIMEOUT = 120.0  # seconds for a zygote to import everything; a loaded machine is slow
REPLY_TIMEOUT = 30.0  # seconds for a zygote to answer a fork request
MAX_START_FAILURES = 3  # after this many zygotes in a row fail to start, stop trying in this process


# ----------------------------------------------------------------------------------------------------------
# Worker side
# ----------------------------------------------------------------------------------------------------------


def supported() -> bool:
    """Whether this platform can fork kernels from a zygote: Linux with pidfds and fd passing."""
    return (sys.platform.startswith("linux") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")
            and hasattr(signal, "pidfd_send_signal"))


def kernel_manager(**kw: Any) -> AsyncKernelManager:
    """The kernel manager for one report.

    Takes the same arguments as ``AsyncKernelManager``. With the speed-ups switched off
    (:func:`auditreport.speedups.enabled`) it is jupyter_client's stock ``AsyncKernelManager``;
    otherwise a :class:`ForkServerKernelManager` where the platform can fork kernels, else a
    :class:`ReportKernelManager`. Callers never need to care which one they got.
    """
    if not speedups.enabled():
        return AsyncKernelManager(**kw)
    if supported():
        return ForkServerKernelManager(**kw)
    return ReportKernelManager(**kw)


class ForkServerKernelManager(ReportKernelManager):
    """A :class:`ReportKernelManager` whose kernels are launched by :class:`ForkServerProvisioner`.

    The provisioner is injected where jupyter_client would create one from the kernelspec, so no
    entry point or kernelspec change is needed and restarts reuse it. That overrides
    ``KernelManager._async_pre_start_kernel``, an internal of jupyter_client, so this manager is only
    used with the speed-ups on (tests/test_speedups.py guards the internal).
    """

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or _uuid()
            self.provisioner = ForkServerProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                     parent=self)
        return await super()._async_pre_start_kernel(**kw)

    pre_start_kernel = _async_pre_start_kernel


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


class _Forked:
    """A kernel process the zygote forked for us: its pid, a pidfd on it, and the zygote's reply socket.

    The reply socket later carries the exit status, which only the zygote (the parent) can collect.
    """

    def __init__(self, pid: int, pidfd: int, reply: socket.socket, stdin_w: int,
                 server: _ForkServer | None = None):
        self.pid = pid
        self.server = server
        self.pidfd = pidfd
        self.reply = reply
        self.stdin_w = stdin_w  # our end of the kernel's stdin pipe, as jupyter_client keeps one
        self.returncode: int | None = None

    def exited(self) -> bool:
        if self.returncode is not None:
            return True
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def collect(self, wait: float) -> int:
        """The exit status (the process has exited); -1 if the zygote cannot tell us (it died too)."""
        if self.returncode is None:
            message = _recv_json(self.reply, wait)
            self.returncode = int(message["exit"]) if message and "exit" in message else -1
        return self.returncode

    def close(self) -> None:
        if self.server is not None:
            with _lock:
                self.server.in_flight -= 1
            self.server = None
        for fd in (self.pidfd, self.stdin_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.reply.close()


class ForkServerProvisioner(LocalProvisioner):
    """Launch the kernel by asking this worker's zygote to fork it; otherwise exactly ``LocalProvisioner``.

    ``pre_launch`` (connection file, command line, environment) is inherited unchanged, so the kernel
    gets the same command and environment either way. Only the last step differs: when the command is
    ``<this python> -m ipykernel_launcher ...`` the zygote forks the kernel, and poll/wait/signals go
    through a pidfd; in any other case, or if the zygote fails, the inherited ``Popen`` path runs.
    """

    _forked: _Forked | None = None
    forked: bool = False  # whether the current kernel came from the zygote (for tests and timings)

    @property
    def has_process(self) -> bool:
        return self._forked is not None or super().has_process

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        forked = _launch_forked(cmd, kwargs)
        if forked is None:
            self.forked = False
            return await super().launch_kernel(cmd, **kwargs)
        self._forked, self.forked = forked, True
        self.pid = self.pgid = forked.pid  # the child called setsid(), as Popen(start_new_session=True) does
        self.cwd = kwargs.get("cwd") or os.getcwd()
        return self.connection_info

    async def poll(self) -> int | None:
        if self._forked is None:
            return await super().poll()
        if not self._forked.exited():
            return None
        return self._forked.collect(wait=0.2)  # the zygote reaps at once; do not hold up the event loop

    async def wait(self) -> int | None:
        if self._forked is None:
            return await super().wait()
        while await self.poll() is None:
            await asyncio.sleep(0.05)
        ret = self._forked.collect(wait=1.0)
        self._forked.close()
        self._forked = None
        return ret

    async def send_signal(self, signum: int) -> None:
        if self._forked is None:
            return await super().send_signal(signum)
        # As LocalProvisioner: the kernel's process group first (it reaches what the kernel started),
        # then the process itself, through the pidfd so a recycled pid can never be hit.
        try:
            os.killpg(self._forked.pid, signum)
            return
        except OSError:
            pass
        signal.pidfd_send_signal(self._forked.pidfd, signum)

    async def kill(self, restart: bool = False) -> None:
        if self._forked is None:
            return await super().kill(restart)
        await self._signal_if_alive(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        if self._forked is None:
            return await super().terminate(restart)
        await self._signal_if_alive(signal.SIGTERM)

    async def _signal_if_alive(self, signum: int) -> None:
        try:
            await self.send_signal(signum)
        except ProcessLookupError:  # already gone: nothing to stop
            pass

    async def cleanup(self, restart: bool = False) -> None:
        if self._forked is not None and self._forked.exited():
            self._forked.collect(wait=0.2)
            self._forked.close()
            self._forked = None
        await super().cleanup(restart)


def _launch_forked(cmd: list[str], kwargs: dict[str, Any]) -> _Forked | None:
    """Ask the zygote for this kernel; None means "start it the ordinary way" (never raises)."""
    try:
        args = _kernel_args(cmd)
        if args is None or kwargs.get("independent") or kwargs.get("stdin") is not None:
            return None
        prefix, argv = args
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        if not os.path.isdir(cwd):
            return None  # let Popen raise its usual error
        stdio = _stdio_fds(kwargs.get("stdout"), kwargs.get("stderr"))
        if stdio is None:
            return None
        server = _server_for(prefix, env)
        if server is None:
            return None
        try:
            return server.launch(argv, cwd, env, *stdio)
        except _ZygoteError:
            _discard(server)
            return None
    except Exception:  # noqa: BLE001 - any trouble here just means the ordinary start
        return None


def _kernel_args(cmd: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """(interpreter and its options, ipykernel_launcher's arguments) for a standard IPython kernel command.

    Only a command that runs ipykernel_launcher with this very interpreter can be forked from a zygote
    running this interpreter; anything else (another environment, another kernel) is started normally.
    """
    cmd = [os.path.expanduser(c) for c in cmd]
    try:
        at = cmd.index("-m")
    except ValueError:
        return None
    if at + 1 >= len(cmd) or cmd[at + 1] != "ipykernel_launcher" or not sys.executable:
        return None
    exe = cmd[0] if os.sep in cmd[0] else (shutil.which(cmd[0]) or "")
    if os.path.abspath(exe) != os.path.abspath(sys.executable):
        return None
    options = cmd[1:at]
    if any(not o.startswith(("-X", "-W", "-b", "-B", "-O", "-u", "-E", "-s", "-I", "-q")) for o in options):
        return None  # an option taking a separate value, or -c: not a plain launcher command
    return (sys.executable, *options), cmd[at + 2:]


def _stdio_fds(stdout: Any, stderr: Any) -> tuple[int, int] | None:
    """File descriptors for the kernel's stdout/stderr as Popen would use them; None if we cannot."""

    def fd_of(stream: Any, default: int) -> int | None:
        if stream is None:
            return default  # Popen: inherit ours
        if stream == subprocess.DEVNULL:
            return -1
        if isinstance(stream, int):
            return stream if stream >= 0 else None  # PIPE / STDOUT: would need Popen's pipes
        try:
            return stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None

    out = fd_of(stdout, 1)
    err = out if stderr == subprocess.STDOUT else fd_of(stderr, 2)
    if out is None or err is None:
        return None
    return out, err


def _startup_key(prefix: tuple[str, ...], env: dict[str, str]) -> tuple:
    """What a zygote's interpreter was started with. A kernel can come from a zygote only if its
    interpreter options and environment (apart from the per-kernel ``JPY_*`` variables, which the child
    sets) are the same, since some of them (``PYTHONPATH``, ``PYTHONHASHSEED``, thread counts of
    numerical libraries...) only take effect when an interpreter starts."""
    return prefix, tuple(sorted((k, v) for k, v in env.items() if not k.startswith("JPY_")))


class _ZygoteError(Exception):
    pass


class _ForkServer:
    """This worker's handle on its zygote: start it, ask it for kernels, stop it."""

    def __init__(self, prefix: tuple[str, ...], env: dict[str, str]):
        self.key = _startup_key(prefix, env)
        self.owner = os.getpid()
        self.in_flight = 0  # kernels forked and not yet waited for
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        main_thread = threading.current_thread() is threading.main_thread()
        zygote_env = {k: v for k, v in env.items() if not k.startswith("JPY_")}
        try:
            self.proc = subprocess.Popen(
                [*prefix, "-m", "auditreport.execution.zygote", str(theirs.fileno()),
                 str(os.getpid()), "1" if main_thread else "0", ",".join(PRELOAD)],
                pass_fds=[theirs.fileno()], env=zygote_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        ready = _recv_json(self.sock, READY_TIMEOUT)
        if not ready or "ready" not in ready:
            self.stop()
            raise _ZygoteError((ready or {}).get("error") or "zygote did not start")
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def launch(self, argv: list[str], cwd: str, env: dict[str, str], stdout: int, stderr: int) -> _Forked:
        """Have the zygote fork a kernel; raises _ZygoteError if it cannot."""
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stdin_r, stdin_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            fds = [theirs.fileno(), stdin_r, stdout if stdout >= 0 else devnull, stderr if stderr >= 0 else devnull]
            request = json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode()
            try:
                socket.send_fds(self.sock, [request], fds)
            except OSError as exc:
                raise _ZygoteError(f"zygote gone: {exc}") from exc
        finally:
            for fd in (stdin_r, devnull):
                os.close(fd)
            theirs.close()
        message = _recv_json(reply, REPLY_TIMEOUT)
        if not message or "pid" not in message:
            reply.close()
            os.close(stdin_w)
            raise _ZygoteError((message or {}).get("error") or "no answer from the zygote")
        pid = int(message["pid"])
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = -1
        with _lock:
            self.in_flight += 1
        forked = _Forked(pid, pidfd, reply, stdin_w, self)
        # An exit status already waiting means the pid may have been reused before pidfd_open.
        if pidfd < 0 or select.select([reply], [], [], 0)[0]:
            forked.collect(wait=1.0)
            if pidfd < 0:
                forked.pidfd = os.open(os.devnull, os.O_RDONLY)  # always "readable": the kernel has exited
        return forked

    def stop(self) -> None:
        """Close the control socket (the zygote exits on end-of-file) and make sure it is gone."""
        try:
            self.sock.close()
        except OSError:
            pass
        if os.getpid() != self.owner:
            return
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_lock = threading.Lock()
_server: _ForkServer | None = None
_start_failures = 0
_exit_hook = False


def _stop_at_exit() -> None:
    """Stop the zygote when this worker exits, and wait for it.

    atexit covers an ordinary interpreter; a multiprocessing worker (the local process pool) leaves with
    os._exit after running multiprocessing's finalizers, so one is registered there too. Waiting for the
    zygote matters for accounting as well: its CPU, and that of every kernel it forked, is added to the
    worker's children's usage only once the worker has reaped it.
    """
    global _exit_hook
    if not _exit_hook:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, stop_zygote, exitpriority=100)
        _exit_hook = True


def _server_for(prefix: tuple[str, ...], env: dict[str, str]) -> _ForkServer | None:
    """This worker's zygote for kernels started with ``prefix`` and ``env``, started if need be.

    A zygote for another interpreter set-up is replaced. If one cannot be started, None (the caller
    starts the kernel normally); after MAX_START_FAILURES failures in a row this process stops trying.
    """
    global _server, _start_failures
    with _lock:
        if _server is not None and not _server.alive():
            _server.stop()
            _server = None
        if _server is not None and _server.key != _startup_key(prefix, env):
            if _server.in_flight:
                # Its kernels are running (other threads' reports): stopping it would end them too, since
                # a kernel exits when its parent does. This kernel starts normally instead.
                return None
            _server.stop()
            _server = None
        if _server is None:
            if _start_failures >= MAX_START_FAILURES:
                return None
            try:
                _server = _ForkServer(prefix, env)
                _start_failures = 0
                _stop_at_exit()
            except Exception:  # noqa: BLE001 - a zygote that will not start means ordinary starts
                _start_failures += 1
                return None
        return _server


def _discard(server: _ForkServer) -> None:
    """Forget a zygote that failed a request, so the next report starts a new one."""
    global _server
    with _lock:
        if _server is server:
            _server = None
    server.stop()


def zygote_pid() -> int | None:
    """The pid of this process's zygote, if one is running (for tests and diagnostics)."""
    server = _server
    return server.pid if server is not None and server.alive() else None


def stop_zygote() -> None:
    """Stop this process's zygote (if any); the next kernel start makes a new one."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()


def _forget_after_fork() -> None:
    """In a forked copy of a worker: the zygote belongs to the parent. Close our copy of its socket, or
    the zygote would not see end-of-file when the parent exits, and never stop it from here."""
    global _server, _lock, _exit_hook
    _lock = threading.Lock()
    _exit_hook = False  # multiprocessing clears its finalizers in a new process
    server, _server = _server, None
    if server is not None:
        try:
            server.sock.close()
        except OSError:
            pass


if __name__ != "__main__":  # in a worker, not in the zygote itself
    atexit.register(stop_zygote)
    os.register_at_fork(after_in_child=_forget_after_fork)


def _recv_json(sock: socket.socket, timeout: float) -> dict | None:
    """One JSON message from ``sock`` within ``timeout`` seconds; None on timeout, end of file or error."""
    try:
        ready = select.select([sock], [], [], timeout)[0]
        if not ready:
            return None
        data = sock.recv(MAX_MESSAGE)
        return json.loads(data) if data else None
    except (OSError, ValueError):
        return None
