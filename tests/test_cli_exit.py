"""The `shoal` console entry (:func:`shoal.cli.main.main`) in a process of its own: it ends with ``os._exit``
(module teardown skipped) yet keeps what a normal exit does: the exit code, the output, exit handlers, threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)


def test_the_exit_code_and_the_output_are_the_commands(tmp_path: Path) -> None:
    done = _run("""
        import sys
        from shoal.cli.main import main
        sys.argv = ["shoal", "--help"]
        main()
        """, tmp_path)
    assert done.returncode == 0 and "Usage: shoal" in done.stdout
    done = _run("""
        import sys
        from shoal.cli.main import main
        sys.argv = ["shoal", "auto"]
        main()
        """, tmp_path)
    assert done.returncode == 2 and "give the DATA file and its --label column" in done.stdout + done.stderr


def test_exit_handlers_run_and_threads_finish_before_the_process_ends(tmp_path: Path) -> None:
    done = _run("""
        import atexit, sys, threading, time
        from pathlib import Path
        from shoal.cli.main import main
        atexit.register(lambda: Path("handler").write_text("ran"))
        def late():
            time.sleep(0.5)
            Path("thread").write_text("done")
        threading.Thread(target=late).start()
        sys.argv = ["shoal", "--help"]
        main()
        print("not reached")
        """, tmp_path)
    assert done.returncode == 0 and "not reached" not in done.stdout
    assert (tmp_path / "handler").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
