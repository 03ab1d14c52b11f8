#!/bin/sh
# setup.sh: what the packaging suite (make test-packaging) needs on a Debian
# 12 machine, installed from Debian's packages when missing, and a Docker
# engine started when none answers. Runs as root (CI does); idempotent.
# No registry is pulled from: the images' base is built locally from
# busybox-static (see docker_test.go).
set -eu

missing=
need() { # COMMAND-OR-FILE PACKAGE
	case $1 in
	/*) [ -e "$1" ] || missing="$missing $2" ;;
	*) command -v "$1" >/dev/null 2>&1 || missing="$missing $2" ;;
	esac
}
need dockerd docker.io
need debootstrap debootstrap
need qemu-aarch64-static qemu-user-static
need qemu-mipsel-static qemu-user-static
need /usr/share/doc/busybox-static busybox-static
need zsh zsh
need fish fish
need systemd-analyze systemd
need dpkg-deb dpkg
need fakeroot fakeroot
need /usr/bin/kill procps

if [ -n "$missing" ]; then
	echo "setup: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086 # a list of package names
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
	echo "setup: starting dockerd (host networking only: no bridge, no iptables)"
	log=${TMPDIR:-/tmp}/ctrl-exec-dockerd.log
	nohup dockerd --iptables=false --ip6tables=false --bridge=none >"$log" 2>&1 &
	i=0
	until docker info >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 120 ]; then
			echo "setup: dockerd did not come up; its log:" >&2
			tail -n 40 "$log" >&2
			exit 1
		fi
		sleep 0.5
	done
fi
echo "setup: docker $(docker version --format '{{.Server.Version}}'), $(debootstrap --version | head -n 1), $(qemu-aarch64-static --version | head -n 1)"
