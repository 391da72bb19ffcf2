# The two commands of the README. Both set everything up on a fresh machine.
#   make demo   evaluate the shipped all-MiniLM-L6-v2 on the shipped CPython FAQ task (offline)
#   make test   run the test suite (what CI runs)
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
EXTRAS = --extra torch --extra vision --extra llm --extra train --extra faiss --extra mteb \
         --extra ray --extra report --extra demo
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

# Regenerate the committed leaderboards from the offline demos' result files: the core demo,
# its Matryoshka dims, and the four training demos (text, image, image-text, LLM), each with
# its zero-shot and fine-tuned results. Models and data are built into DEMO_DATA first.
DEMO_DATA ?= $(CURDIR)/.demo-data
TRAIN_DEMOS = minilm_python_faq effnet_lite0_fashion_mnist_supcon composed_tuxpaint \
              smollm2_python_faq_lora_bidirectional
VB = $(UV) run --frozen --no-sync vembed-bench
DEMO_MODEL = $$($(UV) run --frozen --no-sync python -c "from vembed_bench.demo import demo_model_path as p; print(p())")
leaderboards: setup system-packages
	$(VB) demo --results-dir leaderboards/results
	$(VB) eval --task python_faq --model "$(DEMO_MODEL)" --model-name all-MiniLM-L6-v2 \
	  --dims 384,256,128,64 --results-dir leaderboards/results
	for kind in efficientnet-lite0 smollm2 fashion-mnist tuxpaint; do \
	  $(VB) prepare $$kind --data-root "$(DEMO_DATA)" || exit 1; done
	rm -rf runs/demos leaderboards/results/runs
	for recipe in $(TRAIN_DEMOS); do \
	  $(VB) train trainers/$$recipe.yaml --data-root "$(DEMO_DATA)" --set output_dir=runs/demos || exit 1; done
	for run in runs/demos/*/; do \
	  dest=leaderboards/results/runs/$$(basename $$run); mkdir -p $$dest; \
	  (cd $$run && cp -r eval comparison.json comparison.md train_log.jsonl loss.png config.yaml "$(CURDIR)/$$dest/"); \
	done
	$(VB) leaderboard leaderboards/results --out leaderboards
