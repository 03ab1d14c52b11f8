#!/bin/sh
# build.sh VERSION [ARCH...]: .deb, .apk and .ipk in dist/packages/ from the
# static binaries make dist leaves in dist/ (ctrl-exec-linux-ARCH), with
# nFPM (pinned; run with "go run", nothing to install). Shell completion is
# generated once by the amd64 binary (the scripts are the same for every arch).
set -eu
[ $# -ge 1 ] || { echo "usage: $0 VERSION [ARCH...]" >&2; exit 2; }
version=$1
shift
[ $# -gt 0 ] || set -- amd64 arm64 armv7 mipsle mips
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
GO=${GO:-go}
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.0}

out=dist/packages
gen=dist/gen
mkdir -p "$out" "$gen"
host=dist/ctrl-exec-linux-$($GO env GOARCH)
[ -x "$host" ] || { echo "$0: no $host: run make dist first" >&2; exit 1; }
for role in ctrl-exec ctrl-exec-agent ctrl-exec-api; do
	ln -sf "$top/$host" "$gen/$role"
	for shell in bash zsh fish; do
		"$gen/$role" completion "$shell" >"$gen/$role.$shell"
	done
done

# Build nFPM once rather than "go run" per package.
nfpm=$top/dist/nfpm
[ -x "$nfpm" ] || GOBIN=$top/dist $GO install "$NFPM"

for arch in "$@"; do
	bin=dist/ctrl-exec-linux-$arch
	[ -x "$bin" ] || { echo "$0: no $bin: run make dist first" >&2; exit 1; }
	case $arch in
	armv7) narch=arm7 ;;
	*) narch=$arch ;;
	esac
	# nFPM expands the environment in some fields only: paths are put in here.
	sed -e "s|\${CTRL_EXEC_BIN}|$bin|g" -e "s|\${CTRL_EXEC_GEN}|$gen|g" packaging/nfpm/nfpm.yaml >dist/nfpm-$arch.yaml
	for packager in deb apk ipk; do
		NFPM_VERSION=$version NFPM_ARCH=$narch \
			"$nfpm" package --config "dist/nfpm-$arch.yaml" --packager "$packager" --target "$out/" >/dev/null
	done
done
for f in "$out"/*; do
	printf '%-60s %9d bytes\n' "${f#"$out"/}" "$(wc -c <"$f")"
done | tee dist/PACKAGES
