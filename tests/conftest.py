"""Shared test set-up: offline hubs, one thread per process (CI has 2 cores), and the markers
of what a test needs beyond Python (registered in pyproject.toml)."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from mbtest.repo import REPO  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def repo():
    return REPO


# Marks by place, so that test files stay as they are: "DIR/FILE.py" marks every test of the file,
# "DIR/FILE.py::test_name" one test (all its parameters). An entry naming a file or test that
# no longer exists is an error, so that a rename never silently drops a mark. The slow ones were
# measured on 2 busy cores (> ~5 s); most train through tools/train.py or start processes.
MARKED = {
    "slurm": ["engine/test_slurm_train.py", "sweep/test_slurm.py", "reliability/test_slurm_signal_kill.py"],
    "chromium": ["leaderboard/test_reports.py::test_page_renders_in_headless_chromium"],
    "slow": [
        "engine/test_train_cli.py",
        "engine/test_ddp.py::test_two_process_gloo_run_via_dist_train",
        "engine/test_staged_ddp.py::test_staged_step_under_two_process_ddp_matches_the_one_backward_step",
        "engine/test_staged_ddp.py::test_automix_trains_under_dist_train",
        "engine/test_config_errors.py::test_train_cli_reports_config_error",
        "data/test_train_on_fixtures.py",
        "data/test_configs.py::test_config_builds_model_and_datasets",
        "data/test_published_configs.py::test_published_cnn_config_trains_one_epoch",
        "leaderboard/test_reports.py::test_wandb_logging_offline",
        "mixers/test_base.py::test_visualize_mixers_writes_a_png",
        "mixers/test_bench_plot.py::test_replot_redraws_from_a_saved_json_without_running",
        "leaderboard/test_concurrency.py::test_concurrent_writers_sqlite",
        "leaderboard/test_reports.py",
        "leaderboard/test_analysis_columns.py::test_columns_appear_where_present_in_every_format",
        "sweep/test_e2e_local.py",
        "sweep/test_local_pool.py::test_finished_runs_go_into_the_results_database_and_the_leaderboard_is_printed",
        "sweep/test_local_pool.py::test_kill_9_of_the_sweep_then_restart_finishes_only_the_missing_runs",
        "sweep/test_local_pool.py::test_plan_estimates_cost_from_finished_runs_of_the_same_cell",
        "mixers/test_comixup.py::test_importing_the_mixers_does_not_import_numba",
        "data/test_configs.py::test_convnext_cifar_backbone_is_openmixups",
        "learnable/test_automix_vit.py::test_mix_block_reads_the_vits_stage_map",
        "models/test_backbones.py::test_timm_backbone_local_weights_only",
        "models/test_backbones.py::test_param_counts_match_torchvision_layouts",
        "learnable/test_smmix.py::test_label_weights_pairing_and_consistency_target_on_hand_built_attention",
        "data/test_rand_augment.py::test_timm_rand_augment_is_deits_imagenet_policy",
        "sweep/test_all_methods.py",
        "reliability/test_kill_anywhere.py",
        "reliability/test_disk_full.py",
        "reliability/test_slurm_signal_kill.py",
        "bench/test_equivalence.py::test_tiny_run_trains_both_sides_and_writes_the_summary",
        "engine/test_run_failures.py::test_max_keep_ckpts_holds_across_resumes_and_torn_temp_files_go",
        "engine/test_staged_step.py::test_runner_wraps_a_staged_model_and_installs_its_schedule_hook",
        "bench/test_learnable.py::test_every_row_builds_and_steps",
    ],
}
# Marks by fixture: a test that uses the fixture (directly or through another one) gets the mark.
FIXTURE_MARKS = {"pg_url": "postgres", "trained_dir": "slow"}
# A test whose body calls one of these (a tool run as a process, a training run through
# tools/train.py) is slow.
SLOW_CALLS = {"run_tool", "train_on_digits", "train_then_resume", "train_and_resume"}
TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        rel = item.path.resolve().relative_to(TESTS).as_posix()
        modules[rel] = item.module
        test = f"{rel}::{item.originalname}"
        for mark, places in MARKED.items():
            if rel in places or test in places:
                item.add_marker(mark)
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in item.fixturenames:
                item.add_marker(mark)
        code = getattr(getattr(item, "function", None), "__code__", None)
        if code is not None and SLOW_CALLS & set(code.co_names):
            item.add_marker("slow")
        if item.get_closest_marker("slurm"):
            # one localhost node with 2 CPUs: under `-n 2 --dist loadgroup` the Slurm tests run
            # one after another on one worker instead of queueing behind each other's jobs
            item.add_marker(pytest.mark.xdist_group("slurm"))
        if any(
            m.name == "skipif" and "cuda" in str(m.kwargs.get("reason", "")).lower()
            for m in item.iter_markers()
        ):
            item.add_marker("cuda")  # skipped without CUDA: say so to -m too
    stale = [
        place
        for places in MARKED.values()
        for place in places
        if not (TESTS / place.split("::")[0]).is_file()
        or (
            "::" in place
            and place.split("::")[0] in modules
            and not hasattr(modules[place.split("::")[0]], place.split("::")[1])
        )
    ]
    if stale:
        raise pytest.UsageError(
            f"tests/conftest.py MARKED names tests that do not exist: {stale}; "
            "update it to the new file or test name"
        )
