#!/bin/sh
# Builds what a release ships, from one optimised build of the binary:
# the Debian package and the Python wheel (see docs/release.md).
#
#   dist/build-packages.sh [OUTDIR]      # default: target/packages
#
# Needs cargo, cargo-deb and maturin (.ci/run installs them); without one
# it stops before building and says how to install each missing tool
# (docs/release.md, section 2). `cargo deb --no-build` and maturin reuse
# target/release/hftp: maturin asks cargo for the same release build,
# which is already fresh. Prints one line per artifact with the seconds its
# step took.
set -eu

cd "$(dirname "$0")/.."

# The tools, checked first: otherwise a missing cargo-deb shows up only
# after the release build, as cargo's bare "no such command: deb".
missing=0
lack() {
	if [ "$missing" -eq 0 ]; then
		echo "dist/build-packages.sh: missing tools (docs/release.md, section 2, \"The tools\"; as root, .ci/install installs them all):" >&2
	fi
	missing=1
	printf '  %s\n' "$@" >&2
}
command -v cargo >/dev/null 2>&1 ||
	lack "cargo: install Rust, https://rustup.rs"
# cargo finds its subcommands on PATH and in CARGO_HOME/bin.
command -v cargo-deb >/dev/null 2>&1 || [ -x "${CARGO_HOME:-${HOME:-}/.cargo}/bin/cargo-deb" ] ||
	lack "cargo-deb: cargo install cargo-deb --locked"
command -v maturin >/dev/null 2>&1 ||
	lack "maturin: in a venv of its own, since a distribution's Python refuses a bare \`pip install\` (PEP 668, externally managed):" \
		"  python3 -m venv /opt/maturin && /opt/maturin/bin/pip install 'maturin>=1.5,<2' && ln -sf /opt/maturin/bin/maturin /usr/local/bin/maturin" \
		"  (as root; as a user, any venv whose bin/ is on PATH: python3 -m venv ~/.venvs/maturin && ~/.venvs/maturin/bin/pip install 'maturin>=1.5,<2')"
[ "$missing" -eq 0 ] || exit 1

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
