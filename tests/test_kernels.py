"""Warm stage kernels: started ahead of their stages with the imports done, never left running."""

from __future__ import annotations

import time

import psutil
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.blocking import BlockingKernelClient

from retention_lab.kernels import WarmKernels, shut_down
from retention_lab.runner import KERNEL_NAME


def _evaluate(manager, expression: str) -> str:
    client = BlockingKernelClient(connection_file=manager.connection_file)
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(
            "", user_expressions={"value": expression}, timeout=60, output_hook=lambda _: None
        )
    finally:
        client.stop_channels()
    return reply["content"]["user_expressions"]["value"]["data"]["text/plain"]


def _kernel_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]  # fmt: skip


def test_a_warm_kernel_runs_in_the_run_folder_with_the_stage_packages_imported(tmp_path):
    kernels = WarmKernels(KERNEL_NAME, tmp_path, stages=2)
    first = kernels.take()
    try:
        assert first is not None and first.is_alive()
        # papermill's client then notices a dead kernel and a cell's timeout, as with its own
        assert isinstance(first.client(), AsyncKernelClient)
        assert _evaluate(first, "__import__('os').getcwd()") == repr(str(tmp_path))
        imported = "all(m in __import__('sys').modules for m in ('retention_lab.uplift.summary', "
        imported += "'retention_lab.survival.plots', 'retention_lab.monitor.summary', 'lifelines'))"
        assert _evaluate(first, imported) == "True"
    finally:
        shut_down(first)
    second = kernels.take()  # warmed meanwhile for the second stage
    assert second is not None and second is not first
    shut_down(second)
    assert kernels.take() is None  # two stages, two kernels: none is warmed for a third
    assert not _kernel_processes()


def test_closing_shuts_down_the_kernels_no_stage_took(tmp_path):
    kernels = WarmKernels(KERNEL_NAME, tmp_path, stages=3, ahead=2)  # two stages start at once
    for _ in range(600):  # their processes start in threads of their own
        if len(_kernel_processes()) == 2:
            break
        time.sleep(0.1)
    assert len(_kernel_processes()) == 2
    kernels.close()  # while they still import: each is shut down as soon as it is ready
    assert kernels.take() is None
    _, alive = psutil.wait_procs(_kernel_processes(), timeout=120)
    assert not alive
