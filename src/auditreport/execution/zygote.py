"""The zygote: a process with the report kernel's imports done, that forks a kernel per request.

Started by a worker (see :mod:`auditreport.execution.kernel_forkserver`, which is the worker's side) as
``python -m auditreport.execution.zygote FD PARENT_PID PDEATHSIG MODULES``. It imports ``MODULES``, says
it is ready on the control socket ``FD``, then serves requests: each one carries the kernel's command
line, environment, working folder and standard streams, and gets back the pid of a forked child that
becomes that kernel (:func:`_become_kernel`). It reaps its children and reports their exit status, and it
exits when the worker closes the socket or, where ``PDEATHSIG`` is 1, when the worker's thread dies.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import traceback

MAX_MESSAGE = 1 << 20  # a request carries the kernel's whole environment


def _set_parent_death_signal(parent: int) -> None:
    """Ask Linux to SIGKILL us when the thread that started us exits (belt and braces with the socket's EOF).

    Only used when we were started from the worker's main thread: the signal follows the *thread*, and a
    pool thread (Dask runs tasks in them) may end while the worker lives on.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(0)


def _preload(modules: list[str]) -> None:
    """Import what every kernel needs, so children start with it already imported."""
    import importlib

    # ipykernel sets this default before any cell can import matplotlib; matplotlib records the backend it
    # finds at import (rcParamsOrig), so the zygote imports it under the same setting. The child gets the
    # kernel's own environment afterwards either way.
    default_backend = "MPLBACKEND" not in os.environ
    if default_backend:
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        if default_backend:
            del os.environ["MPLBACKEND"]
    if "matplotlib" in sys.modules:
        from matplotlib import font_manager

        font_manager.fontManager  # noqa: B018 - the font list is loaded (or the cache built) here, once
    import gc

    gc.collect()
    gc.freeze()  # children's garbage collections leave these pages alone, so they stay shared


class _Zygote:
    """The server loop: fork a kernel per request, reap children, report their exit status."""

    def __init__(self, ctrl: socket.socket):
        self.ctrl = ctrl
        self.children: dict[int, socket.socket] = {}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def serve(self) -> dict | None:
        """Serve until the worker goes away (returns None) or, in a forked child, return its request."""
        while True:
            ready = select.select([self.ctrl, self.wake_r], [], [])[0]
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
                self.reap()
            if self.ctrl in ready:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.ctrl, MAX_MESSAGE, 4)
                except OSError:
                    return None
                if not data and not fds:
                    return None  # end of file: the worker has exited
                child = self.fork(data, fds)
                if child is not None:
                    return child

    def fork(self, data: bytes, fds: list[int]) -> dict | None:
        reply = socket.socket(fileno=fds[0]) if fds else None
        try:
            request = json.loads(data)
            if len(fds) != 4:
                raise ValueError("bad request")
            if threading.active_count() != 1:
                raise RuntimeError("zygote has Python threads; will not fork")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as exc:  # noqa: BLE001 - tell the worker, who starts the kernel normally
            if reply is not None:
                _send_json(reply, {"error": f"{type(exc).__name__}: {exc}"})
                reply.close()
            for fd in fds[1:]:
                os.close(fd)
            return None
        if pid == 0:
            self.close_in_child(reply)
            request["stdio"] = fds[1:]
            return request
        for fd in fds[1:]:
            os.close(fd)
        self.children[pid] = reply
        _send_json(reply, {"pid": pid})
        return None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply = self.children.pop(pid, None)
            if reply is not None:
                _send_json(reply, {"exit": os.waitstatus_to_exitcode(status)})
                reply.close()

    def close_in_child(self, reply: socket.socket | None) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        for sibling in self.children.values():
            sibling.close()
        self.children.clear()
        self.ctrl.close()
        if reply is not None:
            reply.close()


def _send_json(sock: socket.socket, message: dict) -> None:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        pass  # the worker has stopped listening; nothing to do


def _become_kernel(request: dict) -> None:
    """In the forked child: become what ``Popen([python, -m, ipykernel_launcher, ...])`` would have started.

    New session, the requested working folder, environment and standard streams, default signal
    handling, fresh random state, then ipykernel_launcher run as ``__main__``.
    """
    import runpy

    os.setsid()
    for target, fd in enumerate(request["stdio"]):
        os.dup2(fd, target)
    for fd in set(request["stdio"]):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    env = dict(request["env"])
    env["JPY_PARENT_PID"] = str(os.getppid())  # the kernel watches its real parent, which is the zygote
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # the zygote's global generator state must not be shared
    # As `python -m` would: argv, and the working folder first on the path (the launcher removes it again).
    sys.argv = ["ipykernel_launcher", *request["argv"]]
    sys.path.insert(0, os.getcwd())
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> int:
    """The zygote: ``python -m auditreport.execution.zygote FD PARENT_PID PDEATHSIG MODULES``."""
    fd, parent, use_pdeathsig, modules = (argv if argv is not None else sys.argv[1:])[:4]
    ctrl = socket.socket(fileno=int(fd))
    if use_pdeathsig == "1":
        _set_parent_death_signal(int(parent))
    # As ipykernel_launcher does before importing: the working folder is not on the kernel's path.
    if sys.path and (sys.path[0] in ("", os.getcwd())):
        del sys.path[0]
    # Every kernel forked from here gets JPY_PARENT_PID = this pid (its real parent), and ipykernel reads
    # that variable when it is imported (the default of IPKernelApp.parent_handle, which decides whether
    # the kernel watches for its parent's death), so import it under that value.
    os.environ["JPY_PARENT_PID"] = str(os.getpid())
    try:
        _preload([m for m in modules.split(",") if m])
    except BaseException as exc:  # noqa: BLE001 - report why, then give up
        _send_json(ctrl, {"error": f"preload failed: {type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-2000:]})
        return 1
    _send_json(ctrl, {"ready": os.getpid(), "python": sys.executable})
    request = _Zygote(ctrl).serve()
    if request is None:
        os._exit(0)  # the worker is gone or asked us to stop; nothing to flush, no reason to linger
    _become_kernel(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
