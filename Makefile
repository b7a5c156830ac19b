# mixbench: `make demo` (install + a small benchmark sweep ending in a leaderboard),
# `make test` (install + system services + the test suite), `make test-fast` (the edit loop:
# no slow, Slurm, PostgreSQL or Chromium tests; 2 processes), `make lint`, `make typecheck`.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo test test-fast lint typecheck bench benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# both builds install cv2/: uninstalling the plain one after the contrib one would break it
	$(PY) -m pip uninstall --yes --quiet opencv-python-headless 2>/dev/null || true
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

system:
	$(SUDO) tools/ci/setup_system.sh

demo: setup
	$(PY) tools/sweep.py run configs/sweeps/demo_digits.yaml --backend local --slots 2

# 2 processes of one thread each (the machines have 2 cores); the Slurm tests share one.
test: setup system
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadgroup

# The markers are registered in pyproject.toml and applied in tests/conftest.py.
FAST := not slow and not slurm and not postgres and not chromium
test-fast: setup
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "$(FAST)"

# ruff's rules and mypy's modules are in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: setup
	$(PY) -m mypy

benchmark: setup
	$(PY) tools/sweep.py run configs/sweeps/fashion_mnist.yaml --backend local --slots 2

bench: setup
	$(PY) bench/overhead.py

clean:
	rm -rf work_dirs
