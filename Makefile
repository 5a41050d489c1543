# ntksweep: the two commands of the README, and their parts.
#   make quickstart   set up, run the embedded default sweep, reduce it, draw its figures
#   make test         set up, run every test (Rust unit + integration + MPI + Slurm, pytest,
#                     dry run of the GPU carry folder)
# Both are idempotent: set-up skips what is already installed and built.

BIN := target/release/ntksweep
PY  := .venv/bin/python
OUT ?= results/quickstart

.PHONY: setup quickstart test test-rust test-python test-slurm test-carry bench gpu-check gpu-carry clean-results

setup:
	bash scripts/setup.sh

quickstart: setup
	$(BIN) run sweeps/quickstart.yaml --out $(OUT)
	$(BIN) reduce $(OUT)
	$(PY) -m analysis $(OUT)

test: setup test-rust test-python test-slurm test-carry

test-rust:
	cargo test --release

test-python:
	$(PY) -m pytest analysis -q

test-slurm:
	bash tests/slurm/run.sh

bench: setup
	$(BIN) bench

gpu-check:
	bash scripts/gpu-check.sh

# The folder a GPU machine without Rust or Open MPI needs (binary + Open MPI + sweeps): .carry
gpu-carry: setup
	bash scripts/gpu-carry.sh .carry

# Dry run of that folder here, with the system's Open MPI hidden (root only; else SKIPPED)
test-carry:
	bash scripts/gpu-carry-dryrun.sh

clean-results:
	rm -rf results
