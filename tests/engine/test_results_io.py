"""mixbench.results: atomic writes leave whole files with ordinary permissions."""

import json
import os
import stat

from mixbench.results import atomic_write_json


def test_atomic_write_json_replaces_whole_file_with_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "sub" / "result.json"
        atomic_write_json(path, {"a": 1})
        atomic_write_json(path, {"a": 2})
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 & ~0027, not mkstemp's 0600
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp file left
