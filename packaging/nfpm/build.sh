#!/bin/sh
# build.sh VERSION [ARCH...]: .deb, .apk and .ipk in dist/packages/ from the
# static binaries make dist leaves in dist/, with nFPM (pinned; run with
# "go run", nothing to install). The .deb and .apk carry the standard build
# (ctrl-exec-linux-ARCH: every role, etcd state backend included, as a control
# host may need); the .ipk, for OpenWrt appliances, the noetcd build
# (ctrl-exec-noetcd-linux-ARCH: 40% smaller, less memory). Shell completion is
# generated once by the host's binary (the scripts are the same for every arch
# and build).
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
# Rebuilt whole: no package of an older version is left beside the new ones.
rm -rf "$out"
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

# Alpine's version grammar has no "-dev+<commit>": a build between tags is
# X.Y.Z_pre<commit time> there (it sorts before X.Y.Z, as -dev does).
apkver=$version
case $version in
*-dev*)
	when=$(git -C "$top" log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null) || when=0
	apkver=${version%%-dev*}_pre$when
	;;
esac

# nfpm_config BINARY: nfpm.yaml for this arch and binary (nFPM expands the
# environment in some fields only: paths are put in here).
nfpm_config() {
	sed -e "s|\${CTRL_EXEC_BIN}|$1|g" -e "s|\${CTRL_EXEC_GEN}|$gen|g" -e "s|\${CTRL_EXEC_IPK_ARCH}|$ipk|g" \
		packaging/nfpm/nfpm.yaml
}

for arch in "$@"; do
	bin=dist/ctrl-exec-linux-$arch
	lite=dist/ctrl-exec-noetcd-linux-$arch
	for f in "$bin" "$lite"; do
		[ -x "$f" ] || { echo "$0: no $f: run make dist first" >&2; exit 1; }
	done
	# nFPM's arch, and the names the package managers use. OpenWrt names
	# its arches per CPU: the default is the commonest target of each (ipq40xx,
	# filogic/mvebu, ramips mt7621, ath79); IPK_ARCH_<arch>=... overrides it.
	# Alpine has no mips ports: no .apk for mips/mipsle.
	case $arch in
	amd64) narch=amd64 ipk=x86_64 apk=yes ;;
	arm64) narch=arm64 ipk=aarch64_cortex-a53 apk=yes ;;
	armv7) narch=arm7 ipk=arm_cortex-a7_neon-vfpv4 apk=yes ;;
	mipsle) narch=mipsle ipk=mipsel_24kc apk=no ;;
	mips) narch=mips ipk=mips_24kc apk=no ;;
	*) echo "$0: unknown arch $arch" >&2; exit 2 ;;
	esac
	eval "ipk=\${IPK_ARCH_$arch:-$ipk}"
	nfpm_config "$bin" >dist/nfpm-$arch.yaml
	nfpm_config "$lite" >dist/nfpm-$arch-ipk.yaml
	NFPM_VERSION=$version NFPM_ARCH=$narch \
		"$nfpm" package --config "dist/nfpm-$arch.yaml" --packager deb --target "$out/" >/dev/null
	NFPM_VERSION=$version NFPM_ARCH=$narch \
		"$nfpm" package --config "dist/nfpm-$arch-ipk.yaml" --packager ipk --target "$out/" >/dev/null
	if [ "$apk" = yes ]; then
		sed -e 's|^version_schema: semver$|version_schema: none\nrelease: "0"|' dist/nfpm-$arch.yaml >dist/nfpm-$arch-apk.yaml
		NFPM_VERSION=$apkver NFPM_ARCH=$narch \
			"$nfpm" package --config "dist/nfpm-$arch-apk.yaml" --packager apk --target "$out/" >/dev/null
	fi
done
for f in "$out"/*; do
	printf '%-60s %9d bytes\n' "${f#"$out"/}" "$(wc -c <"$f")"
done | tee dist/PACKAGES
