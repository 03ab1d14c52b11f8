#!/bin/sh
# Package pre-install script: the accounts install.sh creates (SPEC §19.1).
# Group ctrl-exec (control host: its members run the CLI without sudo) and
# the system user and group ctrl-exec-agent (no login, no home). Existing
# accounts are left alone; OpenWrt, which has no groupadd/useradd, gets
# lines appended with the fixed ids install.sh uses.
set -e

have() { command -v "$1" >/dev/null 2>&1; }
is_openwrt() { [ -f /etc/openwrt_release ]; }
group_exists() { grep -q "^$1:" /etc/group 2>/dev/null; }
user_exists() { grep -q "^$1:" /etc/passwd 2>/dev/null; }

nologin() {
	for s in /usr/sbin/nologin /sbin/nologin; do
		[ -x "$s" ] && { printf '%s' "$s"; return; }
	done
	printf /bin/false
}

add_group() { # NAME OPENWRT_GID
	group_exists "$1" && return 0
	if have groupadd; then
		groupadd --system "$1"
	elif have addgroup && ! is_openwrt; then
		addgroup -S "$1"
	else
		printf '%s:x:%s:\n' "$1" "$2" >>/etc/group
	fi
}

add_user() { # NAME GROUP OPENWRT_UID
	user_exists "$1" && return 0
	if have useradd; then
		useradd --system --no-create-home --home-dir /nonexistent --shell "$(nologin)" \
			--gid "$2" --comment "ctrl-exec agent" "$1"
	elif have adduser && ! is_openwrt; then
		adduser -S -D -H -h /var/empty -s "$(nologin)" -G "$2" -g "ctrl-exec agent" "$1"
	else
		gid=$(grep "^$2:" /etc/group | cut -d: -f3)
		printf '%s:x:%s:%s:ctrl-exec agent:/var/run/%s:/bin/false\n' "$1" "$3" "${gid:-$3}" "$1" >>/etc/passwd
	fi
}

add_group ctrl-exec 9444
add_group ctrl-exec-agent 9443
add_user ctrl-exec-agent ctrl-exec-agent 9443
