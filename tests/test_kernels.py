"""Warm stage kernels: started ahead of their stages with the imports done, never left running."""

from __future__ import annotations

import time

import psutil
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.blocking import BlockingKernelClient

from retention_lab.kernels import WarmKernels, shut_down
from retention_lab.runner import KERNEL_NAME

from .conftest import kernel_processes


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


def test_a_warm_kernel_runs_in_the_run_folder_with_its_stage_s_imports_done(tmp_path):
    kernels = WarmKernels(KERNEL_NAME, tmp_path, stages=["uplift", "survival"])
    first = kernels.take("uplift")
    try:
        assert first is not None and first.is_alive()
        # papermill's client then notices a dead kernel and a cell's timeout, as with its own
        assert isinstance(first.client(), AsyncKernelClient)
        assert _evaluate(first, "__import__('os').getcwd()") == repr(str(tmp_path))
        imported = "all(m in __import__('sys').modules for m in ('retention_lab.uplift.summary', "
        imported += "'retention_lab.survival.plots', 'retention_lab.monitor.summary', 'lifelines', "
        imported += "'causalml.inference.meta'))"  # the uplift stage's learners, too
        assert _evaluate(first, imported) == "True"
    finally:
        shut_down(first)
    second = kernels.take("survival")  # warmed meanwhile for the second stage
    assert second is not None and second is not first
    assert _evaluate(second, "'causalml' in __import__('sys').modules") == "False"
    shut_down(second)
    assert kernels.take("clv") is None  # two stages, two kernels: none is warmed for a third
    assert not kernel_processes()


def test_a_stage_takes_the_kernel_warmed_for_it_else_the_oldest(tmp_path):
    kernels = WarmKernels(KERNEL_NAME, tmp_path, stages=["survival", "uplift", "clv"], ahead=2)
    taken = []
    try:
        taken.append(kernels.take("uplift"))  # the second warmed, not the oldest
        taken.append(kernels.take("data"))  # not expected: survival's kernel ...
        taken.append(kernels.take("survival"))  # ... which is warmed again for survival
        for manager in taken:
            assert manager is not None and manager.is_alive()
        assert _evaluate(taken[0], "'causalml' in __import__('sys').modules") == "True"
        assert _evaluate(taken[1], "'causalml' in __import__('sys').modules") == "False"
    finally:
        for manager in taken:
            if manager is not None:
                shut_down(manager)
        kernels.close()
    _, alive = psutil.wait_procs(kernel_processes(), timeout=120)
    assert not alive


def test_closing_shuts_down_the_kernels_no_stage_took(tmp_path):
    kernels = WarmKernels(KERNEL_NAME, tmp_path, stages=["data", "survival", "clv"], ahead=2)
    for _ in range(600):  # their processes start in threads of their own
        if len(kernel_processes()) == 2:
            break
        time.sleep(0.1)
    assert len(kernel_processes()) == 2
    kernels.close()  # while they still import: each is shut down as soon as it is ready
    assert kernels.take() is None
    _, alive = psutil.wait_procs(kernel_processes(), timeout=120)
    assert not alive
