"""Kernels forked from the kernel template: what a notebook sees is what it sees in an ordinary kernel.

Also: the template's fallbacks, exit statuses and signals, the imports it is given, and the papermill engine
that writes the executed notebook less often.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import nbformat
import papermill
import pytest

from integral_pipeline import engine, kernels
from integral_pipeline.execute import IPCKernelManager
from integral_pipeline.notebooks import notebook_imports

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel templates: Linux only")

#: A cell reporting what a notebook can see of its kernel's process.
PROBE = textwrap.dedent(
    """
    import json, os, sys, threading, warnings
    import matplotlib, numpy
    print(json.dumps({
        "cwd": os.getcwd(), "path": sys.path, "argv0": os.path.basename(sys.argv[0]), "argv": sys.argv[1:2],
        "token": os.environ.get("PROBE_TOKEN"), "backend": matplotlib.get_backend(),
        "main": sys.modules["__main__"].__name__, "user_names": sorted(n for n in globals() if not n.startswith("_")),
        "threads": sorted(t.name.rstrip("0123456789") for t in threading.enumerate()),
        "stdout": type(sys.stdout).__name__,
        "session_leader": os.getsid(0) == os.getpid(), "random": numpy.random.random(),
        "parent": int(os.environ["JPY_PARENT_PID"]) == os.getppid(),
    }))
    """
)


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def _run(source, output, folder, **configured):
    papermill.execute_notebook(
        str(source),
        str(output),
        progress_bar=False,
        engine_name=engine.ENGINE_NAME,
        kernel_manager_class=IPCKernelManager.configured(**configured),
        resources={"metadata": {"path": str(folder)}},
    )
    return nbformat.read(output, as_version=4)


def test_a_forked_kernel_shows_a_notebook_what_an_ordinary_kernel_shows(tmp_path, monkeypatch):
    source = _notebook(
        tmp_path / "probe.ipynb", PROBE, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);\nprint('done')"
    )
    folder = tmp_path / "run"
    folder.mkdir()
    seen = {}
    for mode in ("ordinary", "forked", "forked again"):
        monkeypatch.setenv(kernels.TEMPLATE_ENV, "0" if mode == "ordinary" else "1")
        executed = _run(
            source, tmp_path / f"{mode}.ipynb", folder, environment={"PROBE_TOKEN": "t0k"}, preload=("numpy",)
        )
        seen[mode] = json.loads(executed.cells[0].outputs[0]["text"])
        figure = executed.cells[1].outputs
        assert [output["output_type"] for output in figure] == ["stream", "display_data"], mode
        assert figure[0]["text"] == "done\n" and "image/png" in figure[1]["data"]
    randoms = {mode: observed.pop("random") for mode, observed in seen.items()}
    assert seen["forked"] == seen["ordinary"] == seen["forked again"]
    assert seen["forked"]["cwd"] == str(folder) and seen["forked"]["token"] == "t0k"
    assert "" in seen["forked"]["path"] and seen["forked"]["argv0"] == "ipykernel_launcher.py"
    assert seen["forked"]["backend"] == "module://matplotlib_inline.backend_inline"
    assert seen["forked"]["session_leader"] and seen["forked"]["parent"]
    # numpy's global generator was seeded in the template: each kernel reseeds it
    assert randoms["forked"] != randoms["forked again"]


def test_the_template_never_holds_a_kernels_private_variables(tmp_path):
    # (the kernel has them: test_a_forked_kernel_shows_a_notebook_what_an_ordinary_kernel_shows)
    manager = IPCKernelManager.configured(environment={"PROBE_SECRET": "s3cret"})(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    try:
        process = manager.provisioner.process
        assert isinstance(process, kernels.ForkedKernel)
        template = process._template.process.pid
        if sys.platform.startswith("linux"):
            assert b"PROBE_SECRET" not in open(f"/proc/{template}/environ", "rb").read()
    finally:
        manager.shutdown_kernel(now=True)


def test_a_forked_kernels_exit_status_and_signals_reach_its_manager(tmp_path):
    manager = IPCKernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    process = manager.provisioner.process
    assert isinstance(process, kernels.ForkedKernel) and manager.is_alive()
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    client.execute("import os; os._exit(3)")
    assert process.wait(timeout=30) == 3 and not manager.is_alive()
    client.stop_channels()
    manager.cleanup_resources()

    manager = IPCKernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    process = manager.provisioner.process
    manager.shutdown_kernel(now=True)  # killed: SIGKILL to its process group
    assert process.poll() == -signal.SIGKILL


#: Run in a kernel: its control thread publishes the "idle" status that ends a control request 0.5 s late (as on a
#: loaded machine) and records whether the IOPub thread, which carries it, still runs at that moment.
LATE_CONTROL_STATUS = """
import time
kernel = get_ipython().kernel
publish = kernel._publish_status_and_flush

# (what it uses is bound here: the user namespace is cleared at the kernel's exit, which may come first)
def late(status, channel, *args, _sleep=time.sleep, _kernel=kernel, _publish=publish, **kwargs):
    if channel == "control" and status == "idle":
        _sleep(0.5)
        with open({record!r}, "a") as seen:
            seen.write(f"{{_kernel.iopub_thread.thread.is_alive()}}\\n")
    return _publish(status, channel, *args, **kwargs)

kernel._publish_status_and_flush = late
"""


def test_a_forked_kernel_publishes_its_shutdown_status_before_closing_iopub(tmp_path):
    # ipykernel's race at a kernel's end: the control thread's last status, after the shutdown request, against
    # IOPub's closing at exit; a status sent while IOPub closes can block until the manager terminates the kernel.
    record = tmp_path / "iopub_alive.txt"
    manager = IPCKernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    process = manager.provisioner.process
    assert isinstance(process, kernels.ForkedKernel)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    reply = client.execute_interactive(LATE_CONTROL_STATUS.format(record=str(record)), timeout=60)
    assert reply["content"]["status"] == "ok"
    client.stop_channels()
    manager.shutdown_kernel(now=False)
    assert process.wait(timeout=30) == 0  # it ended by itself, not terminated by its manager
    assert record.read_text().splitlines()[-1] == "True"


def test_the_template_imports_a_kernels_modules_before_forking_it(tmp_path):
    manager = IPCKernelManager.configured(preload=("json.tool", "no_such_module_here"))(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    try:
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        printed = []

        def collect(message):
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])

        # nothing imports json.tool or scipy.stats in a new kernel: the template did (the kernel's, the default's)
        reply = client.execute_interactive(
            "import sys; print('json.tool' in sys.modules, 'scipy.stats' in sys.modules)",
            timeout=60,
            output_hook=collect,
        )
        assert reply["content"]["status"] == "ok" and "".join(printed) == "True True\n"
        client.stop_channels()
    finally:
        manager.shutdown_kernel(now=True)


def test_a_warmed_up_template_is_the_one_kernels_are_forked_from(tmp_path):
    kernels.close_templates()
    template = kernels.warm_template()
    assert template is not None and template.launched == 0
    assert template.preload(["json.tool", "no_such_module_here"]) == ["no_such_module_here"]
    manager = IPCKernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    try:
        assert manager.provisioner.process._template is template and template.launched == 1
    finally:
        manager.shutdown_kernel(now=True)
    assert kernels.warm_template() is template  # one per interpreter, options and environment


def test_no_template_is_warmed_up_when_templates_are_off(monkeypatch):
    monkeypatch.setenv(kernels.TEMPLATE_ENV, "0")
    assert kernels.warm_template() is None


def test_a_template_that_cannot_fork_leaves_kernels_to_the_ordinary_launch(tmp_path, monkeypatch, caplog):
    # A module that starts a thread on import: the template refuses to fork (the thread would be missing in the
    # kernel) and every kernel of that interpreter and PYTHONPATH is then started the ordinary way.
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "starts_a_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "lib"), os.environ.get("PYTHONPATH", "")]))
    source = _notebook(tmp_path / "hello.ipynb", "print('hello')")
    for attempt in range(2):
        executed = _run(source, tmp_path / f"out{attempt}.ipynb", tmp_path, preload=("starts_a_thread",))
        assert executed.cells[0].outputs[0]["text"] == "hello\n"
    refusals = [record for record in caplog.records if "not forked from a template" in record.getMessage()]
    assert len(refusals) == 1 and "threads" in refusals[0].getMessage()


def test_without_templates_kernels_are_ordinary_processes(tmp_path, monkeypatch):
    monkeypatch.setenv(kernels.TEMPLATE_ENV, "0")
    manager = IPCKernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    try:
        assert isinstance(manager.provisioner.process, subprocess.Popen)
    finally:
        manager.shutdown_kernel(now=True)


def test_notebook_imports_are_the_top_level_imports_of_its_code_cells(tmp_path):
    source = _notebook(
        tmp_path / "imports.ipynb",
        "%matplotlib inline\nimport numpy as np, json\nfrom astropy.table import Table",
        "from . import sibling\nif False:\n    import never_at_top_level\ndef f():\n    import inside_a_function",
        "!ls\nfrom integral_workflows import notebook, scw\nfrom os.path import *",
        "this is not python (",
    )
    assert notebook_imports(source) == (
        "numpy",
        "json",
        "astropy.table",
        "astropy.table.Table",
        "integral_workflows",
        "integral_workflows.notebook",
        "integral_workflows.scw",
        "os.path",
    )
    assert notebook_imports(tmp_path / "missing.ipynb") == ()


def test_the_engine_writes_the_executed_notebook_at_its_start_and_end_only_when_cells_are_quick(tmp_path, monkeypatch):
    import papermill.engines

    writes = []
    original = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (writes.append(path), original(nb, path)))
    source = _notebook(tmp_path / "quick.ipynb", "a = 1", "b = a + 1", "print(b)")
    executed = _run(source, tmp_path / "quick_out.ipynb", tmp_path)
    assert len(writes) == 2
    assert executed.cells[2].outputs[0]["text"] == "2\n"
    assert all(cell.metadata.papermill.status == "completed" for cell in executed.cells)
    assert not executed.metadata.papermill.exception

    writes.clear()
    monkeypatch.setattr(engine, "SAVE_INTERVAL_S", 0.0)  # every cell start and end, as papermill does
    _run(source, tmp_path / "quick_out.ipynb", tmp_path)
    assert len(writes) == 2 + 2 * len(executed.cells)

    writes.clear()
    monkeypatch.setattr(engine, "SAVE_INTERVAL_S", 3600.0)
    failing = _notebook(tmp_path / "failing.ipynb", "a = 1", "raise ValueError('no')", "print('never')")
    with pytest.raises(papermill.PapermillExecutionError):
        _run(failing, tmp_path / "failing_out.ipynb", tmp_path)
    partial = nbformat.read(tmp_path / "failing_out.ipynb", as_version=4)
    assert partial.metadata.papermill.exception is True and len(writes) == 2
    [failed] = [cell for cell in partial.cells if cell.metadata.get("papermill", {}).get("exception")]
    assert failed.source == "raise ValueError('no')"
