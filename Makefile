# The two entry points of a fresh clone: `make demo` and `make test`. Both create .venv when absent:
# torch==2.13.0 (CPU) first, so nothing pulls a CUDA build, then shoal with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.shoal-installed

.PHONY: demo test lint typecheck browser bench-ctr bench-text bench-ui bench-distill install-scale bench-scale install-bentoml bench-serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/shoal demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy shoal

# the tests in one worker per core (pytest-xdist), a module's tests in one worker (its fixtures built once); the
# 20 slowest are listed at the end, where the suite's time goes
test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest -q -n auto --dist loadscope --durations=20

# Debian's chromium and its driver for the UI's browser tests (tests/ui): installed with apt when missing; without
# them (no root, no apt) those tests are skipped with a reason, never failed.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  ( $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends \
	      chromium chromium-driver ) >/dev/null 2>&1 \
	  || echo "chromium could not be installed: the browser tests will be skipped"; }

bench-ctr: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/ctr.py --json bench-ctr.json

bench-text: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/text.py --json bench-text.json

bench-ui: $(STAMP) browser
	$(BIN)/python benchmarks/ui.py --json bench-ui.json

bench-distill: $(STAMP)
	$(BIN)/python benchmarks/distill.py --json bench-distill.json

install-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[scale]'
	$(BIN)/python -m pip install --quiet --no-deps torchrec==1.8.0

bench-scale: install-scale
	$(BIN)/python benchmarks/scale.py --json bench-scale.json

# BentoML, a peer of the serving benchmark, in its own environment on top of .venv's packages (a .pth file adds
# them), so it neither changes .venv nor installs another torch.
install-bentoml: $(STAMP)
	test -x .venv-bentoml/bin/python || $(BIN)/python -m venv .venv-bentoml
	echo "import site; site.addsitedir('$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")')" \
	  > "$$(.venv-bentoml/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_shoal_venv.pth"
	.venv-bentoml/bin/python -m pip install --quiet bentoml==1.4.40

bench-serve: install-bentoml
	$(BIN)/python benchmarks/serve.py --json bench-serve.json --bentoml-python .venv-bentoml/bin/python

clean:
	rm -rf $(VENV) .venv-bentoml shoal-runs data .pytest_cache .mypy_cache .ruff_cache
