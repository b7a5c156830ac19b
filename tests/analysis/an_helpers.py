"""Helpers of the analysis tests."""
import importlib.util

from mbtest import REPO


def tool_main(tool: str, *args) -> int:
    """Call ``main(argv)`` of ``tools/analysis/<tool>.py`` in this process (the command line
    a user types, without paying a new interpreter's import time)."""
    path = REPO / "tools/analysis" / f"{tool}.py"
    spec = importlib.util.spec_from_file_location(f"tool_{tool}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in args])
