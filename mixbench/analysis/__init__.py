"""Analysis toolkit: calibration, adversarial / corruption / occlusion robustness, cost,
training curves and Grad-CAM of trained runs (docs/analysis.md).

Each module holds the functions (``mixbench.analysis.calibration.calibration_metrics``,
``...adversarial.fgsm`` ...) and a ``run_<name>(run, ...)`` that evaluates a run loaded by
:func:`mixbench.analysis.common.load_run` and writes ``<work_dir>/analysis/<name>.json``
(a ``summary`` of headline numbers the leaderboard shows, plus the details). The tools in
``tools/analysis/`` are thin command lines over them. Submodules are imported on demand, so
``mixbench.analysis.curves`` works without torch.
"""

ANALYSIS_DIR = "analysis"  # <work_dir>/analysis/<name>.json; read by mixbench.leaderboard.ingest
