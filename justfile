# brigade — `just --list` shows every recipe. Each recipe sets up the cached
# libtorch venv itself (scripts/setup.sh, idempotent), so on a fresh machine
# `just demo` and `just test` are each one command.

env := "scripts/with-env.sh"

# List recipes
default:
    @just --list

# Install the pinned libtorch (torch 2.11.0) + test oracles into a cached venv
setup:
    scripts/setup.sh

# Build everything (debug)
build:
    {{env}} cargo build --workspace --all-targets

# Format check, clippy (deny warnings), and the whole test suite
test:
    {{env}} cargo fmt --all --check
    {{env}} cargo clippy --workspace --all-targets -- -D warnings
    {{env}} cargo test --workspace
    {{env}} cargo test -p brigade-pixels --features turbojpeg

# The whole pipeline on a synthetic dataset, on CPU, in a few minutes
demo *ARGS:
    {{env}} cargo run --release -- demo {{ARGS}}

# Train from a recipe: just train --config recipes/food101-resnet50.toml
train *ARGS:
    {{env}} cargo run --release -- train {{ARGS}}

# Download Food-101 (or place the archive by hand: see README)
fetch *ARGS:
    {{env}} cargo run --release -- fetch food101 {{ARGS}}

# Criterion benches for every stage (root package: benches/*.rs); e.g. `just bench --bench loader`
bench *ARGS:
    {{env}} cargo bench {{ARGS}}

# Release binary (for carrying to a GPU machine)
release:
    {{env}} cargo build --release
