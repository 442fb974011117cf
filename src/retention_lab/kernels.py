"""Stage kernels started ahead of their stages, with the workbench's imports already done.

A stage notebook spends its first seconds starting a kernel and importing the
scientific stack (pandas, matplotlib, lifelines, scikit-learn, the stage
packages), whatever the size of the data: on two cores about 1 s and 2 s. The
runner keeps as many such kernels warm as stages may start at once, in the
background while the run builds its tables and while stages run, and hands one
to each stage that starts, so a stage that waits on another starts computing at
once when its input is ready.

A warm kernel is a fresh process that has only run ``WARM_UP`` (imports and
the plotting theme, nothing that reads data); it runs in the run's folder with
the same arguments as a kernel papermill starts. Each is warmed for a stage,
in the order the stages are expected to start, and also imports the libraries
that stage fits its models with (``FIRST_FIT_IMPORTS``); a stage takes the
kernel warmed for it, else the oldest. A stage that finds no warm kernel (none
ready in time, or it died) starts its own, as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from retention_lab.lazy import declared_members

log = logging.getLogger(__name__)

# what the stage notebooks' first cells do; then the modules the stages use (stage packages
# load their members on first use, see retention_lab.lazy)
WARM_UP = """\
import retention_lab as rl
rl.viz.set_theme()
from retention_lab.kernels import import_stage_modules
import_stage_modules({stage!r})
"""
STAGE_PACKAGES = ("survival", "uplift", "clv", "plan", "monitor")
# libraries a stage's modules import at its first model fit, not with the modules (seconds each,
# and most users of the package, a notebook reading a table say, never fit those models)
FIRST_FIT_IMPORTS = {
    "uplift": ("causalml.inference.meta",),
    "clv": ("pymc_marketing.clv", "pymc_marketing.prior"),
}
START_TIMEOUT_S = 120
# the kernel's own log (its transport warning, the interrupt at shutdown) is noise in a
# scheduler's log; a failing cell or a dead kernel is reported by the runner
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
ASYNC_CLIENT = "jupyter_client.asynchronous.AsyncKernelClient"


def import_stage_modules(stage: str | None = None) -> None:
    """Import the stage packages' modules, then the libraries ``stage`` fits its models with.

    The modules are each package's declared members' modules and its plots.
    """
    for package in STAGE_PACKAGES:
        name = f"retention_lab.{package}"
        init = importlib.util.find_spec(name).origin
        modules = {module for module, _ in declared_members(init).values()}
        for module in sorted(modules | {f"{name}.plots"}):
            importlib.import_module(module)
    for module in FIRST_FIT_IMPORTS.get(stage, ()):
        importlib.import_module(module)


class WarmKernels:
    """Keeps ``ahead`` warm kernels ready for the next of ``stages`` to take.

    ``stages`` are in the order they are expected to start; ``ahead`` is how
    many may start at once (the run's concurrency): two stages starting
    together each find a kernel. ``take(stage)`` returns the manager of the
    kernel warmed for ``stage``, else of the oldest (waiting for it if it is
    still importing), and starts warming another, until every stage has had
    one; ``close()`` shuts down those left over. Safe to call from the
    runner's stage threads.
    """

    def __init__(self, kernel_name: str, cwd: Path, stages: Sequence[str], ahead: int = 1) -> None:
        self.kernel_name, self.cwd = kernel_name, cwd
        self._lock = threading.Lock()
        self._upcoming = deque(stages)  # stages no kernel is warming for yet
        self._closed = False
        self._warming: deque[_Warming] = deque()
        with self._lock:
            for _ in range(ahead):
                self._warm_next()

    def _warm_next(self) -> None:
        """Start warming a kernel for the next stage to come, if one is left (under the lock)."""
        if self._upcoming and not self._closed:
            self._warming.append(_Warming(self.kernel_name, self.cwd, self._upcoming.popleft()))

    def take(self, stage: str | None = None):
        """A warm kernel's ``KernelManager`` for ``stage``, or None (the stage starts its own).

        The kernel warmed for ``stage`` if there is one, else the oldest; a
        stage whose kernel another took is warmed for again, first.
        """
        with self._lock:
            warming = next((w for w in self._warming if w.stage == stage), None)
            if warming is None and self._warming:
                warming = self._warming[0]
                self._upcoming.appendleft(warming.stage)
            if warming is not None:
                self._warming.remove(warming)
            if stage in self._upcoming:
                self._upcoming.remove(stage)
            self._warm_next()
        return warming.result() if warming else None

    def close(self) -> None:
        """Warm no more kernels; shut down those no stage took."""
        with self._lock:
            self._closed, left_over = True, list(self._warming)
            self._warming.clear()
        for warming in left_over:
            warming.discard()


class _Warming:
    """One kernel starting and importing for ``stage`` in a thread of its own."""

    def __init__(self, kernel_name: str, cwd: Path, stage: str) -> None:
        self.stage = stage
        self._manager = None
        self._discarded = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        threading.Thread(
            target=self._warm, args=(kernel_name, cwd), name="warm-kernel", daemon=True
        ).start()

    def _warm(self, kernel_name: str, cwd: Path) -> None:
        from jupyter_client.manager import KernelManager

        manager = KernelManager(kernel_name=kernel_name)
        try:
            manager.start_kernel(extra_arguments=KERNEL_ARGUMENTS, cwd=str(cwd))
            client = manager.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=START_TIMEOUT_S)
                reply = client.execute_interactive(
                    WARM_UP.format(stage=self.stage),
                    store_history=False,
                    timeout=START_TIMEOUT_S,
                    output_hook=_ignore,
                )
            finally:
                client.stop_channels()
            if reply["content"]["status"] != "ok":
                raise RuntimeError(reply["content"].get("evalue", "the warm-up failed"))
            # papermill's client must wait on the kernel asynchronously, as with a kernel it
            # starts itself: a blocking client would not notice a dead kernel or a cell timeout
            manager.client_class = ASYNC_CLIENT
        except Exception as error:  # the stage then starts a kernel of its own
            from retention_lab.lifecycle import describe  # the runner's, not the kernel's import

            log.warning("a kernel did not start ahead of its stage (%s); the stage starts its own",
                        describe(error))  # fmt: skip
            shut_down(manager)
            manager = None
        with self._lock:
            if self._discarded and manager is not None:
                shut_down(manager)
                manager = None
            self._manager = manager
        self._done.set()

    def result(self):
        """The warm kernel's manager once it is ready; None if it could not start or died."""
        self._done.wait()
        manager = self._manager
        if manager is not None and not manager.is_alive():
            shut_down(manager)
            return None
        return manager

    def discard(self) -> None:
        """Shut the kernel down, now if it is ready, else as soon as it is (no waiting)."""
        with self._lock:
            self._discarded, manager, self._manager = True, self._manager, None
        if manager is not None:
            shut_down(manager)


def _ignore(message) -> None:
    """Output of the warm-up (there is none but warnings) is not shown anywhere."""


def shut_down(manager) -> None:
    """Stop a kernel the runner started (at once: its stage has ended) and remove its files."""
    try:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    except Exception as error:  # already gone
        log.debug("warm kernel shutdown: %s", error)
    finally:
        manager.cleanup_resources()
