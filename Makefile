# The two commands of the README. Both set everything up on a fresh machine.
#   make demo   evaluate the shipped all-MiniLM-L6-v2 on the shipped CPython FAQ task (offline)
#   make test   run the test suite (what CI runs)
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
EXTRAS = --extra torch --extra vision --extra llm --extra train --extra faiss --extra mteb \
         --extra report --extra demo
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: setup system-packages demo test leaderboards

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen $(EXTRAS)

demo: setup
	$(UV) run --frozen --no-sync vembed-bench demo

# Debian packages some tests use: Chromium renders the HTML report; Fashion-MNIST, the Tux
# Paint stamps (GPL, never committed: tasks are built from the installed package) and the
# CPython docs (to rebuild the shipped FAQ task) are real offline data. Tests that need a
# missing one are skipped with the reason, so `make test` also works without root.
APT_PACKAGES = chromium dataset-fashion-mnist tuxpaint-stamps-default python3.11-doc
system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null) || echo "could not install: $$missing"; \
	  else echo "not installed (tests that need them will be skipped): $$missing"; fi; \
	fi

test: setup system-packages
	$(UV) run --frozen --no-sync pytest -q

# Regenerate the committed leaderboards from the offline demos' result files.
DEMO_MODEL = $$($(UV) run --frozen --no-sync python -c "from vembed_bench.demo import demo_model_path as p; print(p())")
leaderboards: setup
	$(UV) run --frozen --no-sync vembed-bench demo --results-dir leaderboards/results
	$(UV) run --frozen --no-sync vembed-bench eval --task python_faq --model "$(DEMO_MODEL)" \
	  --model-name all-MiniLM-L6-v2 --dims 384,256,128,64 --results-dir leaderboards/results
	$(UV) run --frozen --no-sync vembed-bench train trainers/minilm_python_faq.yaml --set output_dir=runs --overwrite
	rm -rf leaderboards/results/runs/minilm-python-faq && mkdir -p leaderboards/results/runs/minilm-python-faq
	cd runs/minilm-python-faq && cp -r eval comparison.json comparison.md train_log.jsonl loss.png config.yaml \
	  ../../leaderboards/results/runs/minilm-python-faq/
	$(UV) run --frozen --no-sync vembed-bench leaderboard leaderboards/results --out leaderboards
