# The two commands of the README. Both set everything up on a fresh machine.
#   make demo   evaluate the shipped all-MiniLM-L6-v2 on the shipped CPython FAQ task (offline)
#   make test   run the test suite (what CI runs)
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
EXTRAS = --extra torch --extra vision --extra llm --extra train --extra faiss --extra mteb \
         --extra report --extra demo
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: setup browser demo test bench

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen $(EXTRAS)

demo: setup
	$(UV) run --frozen --no-sync vembed-bench demo

# Headless Chromium renders the HTML report in one test (skipped, with the reason, where
# it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null) || \
	  echo "chromium not installed: the HTML report test will be skipped"; }

test: setup browser
	$(UV) run --frozen --no-sync pytest -q

bench: setup
	$(UV) run --frozen --no-sync python benchmarks/run_all.py
