#!/bin/sh
# Builds what a release ships, from one optimised build of the binary:
# the Debian package and the Python wheel (see docs/release.md).
#
#   dist/build-packages.sh [OUTDIR]      # default: target/packages
#
# Needs cargo-deb and maturin (.ci/run installs both). `cargo deb
# --no-build` and maturin reuse target/release/hftp: maturin asks cargo for
# the same release build, which is already fresh. Prints one line per
# artifact with the seconds its step took.
set -eu

cd "$(dirname "$0")/.."
out=${1:-target/packages}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"

step() {
	started=$(date +%s)
	"$@"
	echo "step took $(($(date +%s) - started)) s: $*" >&2
}

step cargo build --release --locked -p hftp-cli
step dist/gen-assets.sh "$target/release/hftp" "$target/release/hftp-assets"
step cargo deb -p hftp-cli --no-build --locked --output "$out/"
step maturin build --release --locked --out "$out"
