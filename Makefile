# dsla_d2 — the two commands of the README quick start, and their set-up.
#   make demo   train the default detector (ATSS) on the embedded dataset, evaluate it with
#               COCOEvaluator (AP table), draw predictions to output/atss_synth/demo.png
#   make test   run the test suite
# Both first run the set-up (a .venv in the repo); it is a no-op once done.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dsla_d2-installed
DEMO_CONFIG ?= configs/atss_r18_synth.py
DEMO_OUT ?= output/atss_synth
PYTEST_ARGS ?=

.PHONY: install demo test bench clean-venv

$(STAMP): setup.cfg pyproject.toml tools/install_detectron2.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python tools/install_detectron2.py
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test]'
	$(BIN)/python -c "import dsla_d2, detectron2; print('dsla_d2', dsla_d2.__version__, 'detectron2', detectron2.__version__)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python train_net.py --config-file $(DEMO_CONFIG) --resume train.output_dir=$(DEMO_OUT)
	$(BIN)/python demo.py --output-dir $(DEMO_OUT) --dataset dsla_synth_val --num-images 6 --out $(DEMO_OUT)/demo.png

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_assigners.py

clean-venv:
	rm -rf $(VENV)
