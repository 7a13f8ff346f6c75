# The two commands of the README: `make demo` and `make test`. Both install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint typecheck bench clean

setup:
	tools/setup.sh

demo: setup
	$(VENV)/bin/geoloc demo

# Lint, type check, the tests that need PyPI (network: they start no ROS), then the rest of the suite,
# ROS tests included, inside a private network namespace (loopback only). CI (.ci/run) runs this.
test: setup
	$(VENV)/bin/ruff check geoloc_ros test bench launch
	$(VENV)/bin/ruff format --check geoloc_ros test bench launch
	$(VENV)/bin/mypy geoloc_ros
	$(PY) -m pytest -m network
	$(PY) -m geoloc_ros.nodes.isolation -- $(PY) -m pytest -m "not network"

test-fast: setup
	$(PY) -m geoloc_ros.nodes.isolation -- $(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check geoloc_ros test bench launch
	$(VENV)/bin/ruff format --check geoloc_ros test bench launch

typecheck: setup
	$(VENV)/bin/mypy geoloc_ros

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
