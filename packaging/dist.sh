#!/bin/sh
# dist.sh VERSION COMMIT [ARCH...]: static release builds and tarballs in dist/.
#
# For each target (default: all of TARGETS below) it builds ctrl-exec twice:
# the standard build, and the noetcd build (no etcd state backend: smaller,
# less memory; for agents and appliances). Each is laid out as
#   ctrl-exec-VERSION-linux-ARCH/{install.sh,bin/,man/,packaging/,LICENCE,README.md}
#   ctrl-exec-noetcd-VERSION-linux-ARCH/{...the same}
# (install.sh at the top, so "sudo ./install.sh --ctrl-exec" works from the
# unpacked release), packed as .tar.gz with a .sha256 beside it. The bare
# binaries stay as dist/ctrl-exec-linux-ARCH and dist/ctrl-exec-noetcd-linux-ARCH
# (for make packages and the tests). dist/SHA256SUMS covers every tarball of
# VERSION; dist/SIZES gives binary and tarball bytes per arch and build.
set -eu

[ $# -ge 2 ] || { echo "usage: $0 VERSION COMMIT [ARCH...]" >&2; exit 2; }
version=$1 commit=$2
shift 2
TARGETS="amd64 arm64 armv7 mipsle mips"
[ $# -gt 0 ] || set -- $TARGETS

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
GO=${GO:-go}
ldflags="-s -w -X github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo.Version=$version -X github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo.Commit=$commit"
names="ctrl-exec-dispatcher ced ctrl-exec-agent cea ctrl-exec-api update-ctrl-exec-serial"
mkdir -p dist
: >dist/SIZES

for arch in "$@"; do
	case $arch in
	amd64 | arm64) goarch=$arch goarm= gomips= ;;
	armv7) goarch=arm goarm=7 gomips= ;;
	mipsle | mips) goarch=$arch goarm= gomips=softfloat ;;
	*) echo "$0: unknown arch $arch (known: $TARGETS)" >&2; exit 2 ;;
	esac
	# Older versions' tarballs of this arch go (both builds): one release per arch in dist/.
	rm -f dist/ctrl-exec-*-linux-"$arch".tar.gz dist/ctrl-exec-*-linux-"$arch".tar.gz.sha256
	for build in standard noetcd; do
		case $build in
		standard) tags=urfave_cli_no_docs prefix=ctrl-exec ;;
		noetcd) tags=urfave_cli_no_docs,noetcd prefix=ctrl-exec-noetcd ;;
		esac
		name=$prefix-$version-linux-$arch
		stage=dist/$name
		bare=dist/$prefix-linux-$arch # bare binary, for packages and tests
		rm -rf "$stage"
		mkdir -p "$stage/bin"
		CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm GOMIPS=$gomips \
			$GO build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$stage/bin/ctrl-exec" .
		for n in $names; do ln -s ctrl-exec "$stage/bin/$n"; done
		cp -a man packaging LICENCE README.md "$stage/"
		cp -p packaging/install.sh "$stage/install.sh"
		cp "$stage/bin/ctrl-exec" "$bare"
		tar -C dist --owner=0 --group=0 --numeric-owner -czf "dist/$name.tar.gz" "$name"
		(cd dist && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
		rm -rf "$stage"
		printf '%-8s %-8s binary %9d bytes  tarball %9d bytes\n' "$arch" "$build" \
			"$(wc -c <"$bare")" "$(wc -c <"dist/$name.tar.gz")" | tee -a dist/SIZES
	done
done
(cd dist && cat ./ctrl-exec-"$version"-*.tar.gz.sha256 ./ctrl-exec-noetcd-"$version"-*.tar.gz.sha256 >SHA256SUMS)
echo "dist/: $(ls dist/*.tar.gz | wc -l) tarballs, SHA256SUMS, SIZES"
