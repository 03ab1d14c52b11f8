#!/bin/sh
# install.sh: install, upgrade or remove ctrl-exec (the Go build) on one host.
#
# One static binary is installed as /usr/local/bin/ctrl-exec; every other
# program name (ctrl-exec-dispatcher, ced, ctrl-exec-agent, cea,
# ctrl-exec-api, update-ctrl-exec-serial) is a symlink to it. The role flags
# decide which directories, example configs, accounts and service files are
# set up. Existing configuration is never overwritten, and --uninstall
# removes only programs, symlinks, manual pages and service files.
#
# Runs under any POSIX sh (dash, busybox ash). Run it as root, or stage the
# whole tree under a directory with --prefix DIR (or DESTDIR=DIR), which
# needs no privileges. Run with --help for the options.

set -eu

PROG=install.sh

# Installed layout (SPEC §7, §19). A staging root is prefixed to all of them.
BIN_DIR=/usr/local/bin
MAN_DIR=/usr/local/share/man
COMPLETION_DIR=/usr/local/share
CONF_DIR=/etc/ctrl-exec
STATE_DIR=/var/lib/ctrl-exec
AGENT_DIR=/etc/ctrl-exec-agent
SCRIPTS_DIR=/opt/ctrl-exec-scripts
LIB_DIR=/usr/local/lib/ctrl-exec
SYSTEMD_DIR=/etc/systemd/system
INITD_DIR=/etc/init.d
UCI_DEFAULTS_DIR=/etc/uci-defaults

CONTROL_GROUP=ctrl-exec
AGENT_USER=ctrl-exec-agent
AGENT_GROUP=ctrl-exec-agent
# OpenWrt has no useradd/groupadd: accounts are appended with fixed ids.
OPENWRT_AGENT_ID=9443
OPENWRT_CONTROL_GID=9444

ALIASES="ctrl-exec-dispatcher ced ctrl-exec-agent cea ctrl-exec-api update-ctrl-exec-serial"

usage() {
	cat <<EOF
Usage: $PROG ROLE... [options]
       $PROG --uninstall [options]

Roles (one or more):
  --dispatcher, --ctrl-exec  control host: CLI, CA and pairing directories,
                             ctrl-exec.conf and a deny-all auth-hook
  --api                      HTTP API service (needs the control host role,
                             now or from an earlier run)
  --agent                    agent: service account, agent.conf, scripts.conf,
                             $SCRIPTS_DIR with update-ctrl-exec-serial
  --uninstall                remove programs, symlinks, manual pages and
                             service files; keep configuration, keys and state

Options:
  --renewal       let the services write what certificate renewal and
                  control-certificate rotation store: $AGENT_DIR becomes
                  group-writable (0770) and a systemd drop-in adds
                  ReadWritePaths (agent: $AGENT_DIR, API: $CONF_DIR)
  --init SYSTEM   service files to install: systemd, openrc, procd or none
                  (default: detected; systemd when staging)
  --bin FILE      the ctrl-exec binary to install (default: bin/ctrl-exec
                  next to this packaging directory, as 'make build' leaves it)
  --prefix DIR    stage everything under DIR instead of /; also DESTDIR=DIR.
                  No root needed: accounts, ownership and the service manager
                  are left alone. A staged tree works as CTRL_EXEC_ROOT.
  -h, --help      show this help

Examples:
  sudo sh $PROG --dispatcher --api      # control host with the API service
  sudo sh $PROG --agent --renewal       # agent that can store renewed certs
  sh $PROG --agent --prefix /tmp/stage  # look at what an agent install makes
EOF
}

info() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf '%s: %s\n' "$PROG" "$*" >&2
	exit 1
}

# --- arguments ---------------------------------------------------------------

DO_CONTROL=no
DO_API=no
DO_AGENT=no
DO_UNINSTALL=no
RENEWAL=no
INIT=auto
BIN_SRC=
ROOT=${DESTDIR:-}

need_value() {
	if [ $# -lt 2 ] || [ -z "$2" ]; then
		die "$1 needs a value (see --help)"
	fi
}

while [ $# -gt 0 ]; do
	case $1 in
	--agent) DO_AGENT=yes ;;
	--dispatcher | --ctrl-exec) DO_CONTROL=yes ;;
	--api) DO_API=yes ;;
	--uninstall) DO_UNINSTALL=yes ;;
	--renewal) RENEWAL=yes ;;
	--init) need_value "$@"; INIT=$2; shift ;;
	--init=*) INIT=${1#*=} ;;
	--bin) need_value "$@"; BIN_SRC=$2; shift ;;
	--bin=*) BIN_SRC=${1#*=} ;;
	--prefix) need_value "$@"; ROOT=$2; shift ;;
	--prefix=*) ROOT=${1#*=} ;;
	-h | --help) usage; exit 0 ;;
	--run-tests) die "--run-tests belongs to the Perl installer; run 'make test' in the source tree instead" ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

case $INIT in
auto | systemd | openrc | procd | none) ;;
*) die "--init must be systemd, openrc, procd or none, not '$INIT'" ;;
esac

if [ "$DO_UNINSTALL" = yes ]; then
	if [ "$DO_CONTROL$DO_API$DO_AGENT" != nonono ]; then
		die "--uninstall removes every role; give it without role flags"
	fi
elif [ "$DO_CONTROL$DO_API$DO_AGENT" = nonono ]; then
	usage >&2
	die "name a role: --dispatcher, --api, --agent or --uninstall"
fi

STAGING=no
if [ -n "$ROOT" ]; then
	case $ROOT in
	/*) ;;
	*) ROOT=$(pwd)/$ROOT ;;
	esac
	while [ "${ROOT%/}" != "$ROOT" ]; do ROOT=${ROOT%/}; done
	[ -n "$ROOT" ] || die "--prefix / is a real install: omit --prefix instead"
	STAGING=yes
elif [ "$(id -u)" -ne 0 ]; then
	die "run as root (sudo sh $PROG ...), or stage the files with --prefix DIR"
fi

# Where this script lives: packaging/ in the source tree, or the top of a
# release tarball (make dist puts a copy there, beside bin/ and packaging/).
case $0 in
*/*) HERE=$(cd "$(dirname "$0")" && pwd) ;;
*) HERE=$(pwd) ;;
esac
if [ -d "$HERE/packaging/examples" ]; then
	TOP=$HERE
	PKG=$HERE/packaging
else
	TOP=$(dirname "$HERE")
	PKG=$HERE
fi
[ -n "$BIN_SRC" ] || BIN_SRC=$TOP/bin/ctrl-exec

# --- platform ------------------------------------------------------------------

is_openwrt() { [ -f /etc/openwrt_release ]; }
have() { command -v "$1" >/dev/null 2>&1; }

if [ "$INIT" = auto ]; then
	if [ "$STAGING" = yes ]; then
		INIT=systemd
	elif [ -d /run/systemd/system ] || have systemctl; then
		INIT=systemd
	elif is_openwrt && [ -x /sbin/procd ]; then
		INIT=procd
	elif have openrc-run || [ -x /sbin/openrc-run ]; then
		INIT=openrc
	else
		INIT=none
	fi
fi

# The service manager is driven only on a live, non-staged system.
systemd_live() { [ "$STAGING" = no ] && [ -d /run/systemd/system ] && have systemctl; }

# --- file helpers ----------------------------------------------------------------

# p PATH: where an installed path lives (under the staging root, if any).
p() { printf '%s%s' "$ROOT" "$1"; }

# own OWNER:GROUP PATH: set ownership, except when staging.
own() {
	[ "$STAGING" = no ] || return 0
	chown "$1" "$(p "$2")"
}

# make_dir MODE OWNER:GROUP DIR: create DIR with MODE and OWNER. An existing
# directory is left as it is, so an operator's choices survive upgrades.
make_dir() {
	if [ -d "$(p "$3")" ]; then
		return 0
	fi
	mkdir -p "$(p "$3")"
	chmod "$1" "$(p "$3")"
	own "$2" "$3"
	info "created $3 ($1 $2)"
}

# put_file MODE SRC DEST: copy SRC over DEST atomically (a running program is
# replaced, not rewritten in place).
put_file() {
	[ -f "$2" ] || die "missing $2: is this a complete source tree or release?"
	dest=$(p "$3")
	mkdir -p "$(dirname "$dest")"
	cp "$2" "$dest.new.$$"
	chmod "$1" "$dest.new.$$"
	mv -f "$dest.new.$$" "$dest"
}

# put_config MODE OWNER:GROUP SRC DEST: install an example only where no file
# exists yet. Configuration is never overwritten.
put_config() {
	if [ -e "$(p "$4")" ] || [ -L "$(p "$4")" ]; then
		info "kept existing $4"
		return 0
	fi
	put_file "$1" "$3" "$4"
	own "$2" "$4"
	info "wrote $4 from $(basename "$3")"
}

# put_link TARGET LINK: make LINK a symlink to TARGET, replacing a file or link.
put_link() {
	dest=$(p "$2")
	mkdir -p "$(dirname "$dest")"
	rm -f "$dest"
	ln -s "$1" "$dest"
}

remove() {
	if [ -e "$(p "$1")" ] || [ -L "$(p "$1")" ]; then
		rm -f "$(p "$1")"
		info "removed $1"
	fi
}

# --- accounts ----------------------------------------------------------------------

group_exists() {
	if have getent; then
		getent group "$1" >/dev/null 2>&1
	else
		grep -q "^$1:" /etc/group 2>/dev/null
	fi
}

nologin_shell() {
	for s in /usr/sbin/nologin /sbin/nologin; do
		if [ -x "$s" ]; then
			printf '%s' "$s"
			return
		fi
	done
	printf '/bin/false'
}

ensure_group() { # NAME OPENWRT_GID
	[ "$STAGING" = no ] || return 0
	if group_exists "$1"; then
		info "group $1 already exists"
		return 0
	fi
	if have groupadd; then
		groupadd --system "$1"
	elif have addgroup && ! is_openwrt; then
		addgroup -S "$1"
	else
		if cut -d: -f3 /etc/group | grep -qx "$2"; then
			die "cannot create group $1: id $2 is taken and there is no groupadd/addgroup"
		fi
		printf '%s:x:%s:\n' "$1" "$2" >>/etc/group
	fi
	info "created system group $1"
}

ensure_user() { # NAME GROUP OPENWRT_UID
	[ "$STAGING" = no ] || return 0
	if id "$1" >/dev/null 2>&1; then
		info "user $1 already exists"
		return 0
	fi
	if have useradd; then
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell "$(nologin_shell)" --gid "$2" --comment "ctrl-exec agent" "$1"
	elif have adduser && ! is_openwrt; then
		adduser -S -D -H -h /var/empty -s "$(nologin_shell)" -G "$2" -g "ctrl-exec agent" "$1"
	else
		if cut -d: -f3 /etc/passwd | grep -qx "$3"; then
			die "cannot create user $1: id $3 is taken and there is no useradd/adduser"
		fi
		gid=$(grep "^$2:" /etc/group | cut -d: -f3)
		printf '%s:x:%s:%s:ctrl-exec agent:/var/run/%s:/bin/false\n' "$1" "$3" "${gid:-$3}" "$1" >>/etc/passwd
	fi
	info "created system user $1 (no login, no home)"
}

# --- programs, manual pages -------------------------------------------------------

install_programs() {
	if [ ! -f "$BIN_SRC" ] || [ ! -x "$BIN_SRC" ]; then
		die "no executable at $BIN_SRC: run 'make build' first, or pass --bin FILE"
	fi
	put_file 0755 "$BIN_SRC" "$BIN_DIR/ctrl-exec"
	for name in $ALIASES; do
		put_link ctrl-exec "$BIN_DIR/$name"
	done
	version=$("$BIN_SRC" --version 2>/dev/null | head -n 1) || version=
	info "installed $BIN_DIR/ctrl-exec${version:+ ($version)}"
	info "  symlinked as: $ALIASES"
	if [ -f "$(p "$LIB_DIR/Exec/openapi.json")" ]; then
		info "note: $LIB_DIR is left from the Perl release; ctrl-exec-api serves its"
		info "  Exec/openapi.json instead of the built-in description. Nothing else there"
		info "  but auth-hook.example is used: remove the Perl files once no Perl ctrl-exec"
		info "  runs on this host."
	fi
	install_manpages
	install_completions
}

# Shell completion, generated by the binary itself; a file (or link) per
# program name where the shell looks completions up by name.
COMPLETION_ROLES="ctrl-exec:ctrl-exec-dispatcher:ced ctrl-exec-agent:cea ctrl-exec-api"

install_completions() {
	tmp=$(mktemp -d)
	case $BIN_SRC in
	/*) bin=$BIN_SRC ;;
	*) bin=$(pwd)/$BIN_SRC ;;
	esac
	# The role comes from the program name, so run it by each role's name.
	for role in $COMPLETION_ROLES; do
		ln -s "$bin" "$tmp/${role%%:*}"
	done
	if ! "$tmp/ctrl-exec" completion bash >/dev/null 2>&1; then
		rm -rf "$tmp"
		warn "$BIN_SRC does not run here (another architecture?): no shell completion installed"
		return 0
	fi
	for role in $COMPLETION_ROLES; do
		main=${role%%:*}
		for shell in bash zsh fish; do
			"$tmp/$main" completion "$shell" >"$tmp/$main.$shell"
		done
		put_file 0644 "$tmp/$main.bash" "$COMPLETION_DIR/bash-completion/completions/$main"
		put_file 0644 "$tmp/$main.zsh" "$COMPLETION_DIR/zsh/site-functions/_$main"
		put_file 0644 "$tmp/$main.fish" "$COMPLETION_DIR/fish/vendor_completions.d/$main.fish"
		for alias in $(printf '%s' "$role" | tr ':' ' '); do
			[ "$alias" != "$main" ] || continue
			put_link "$main" "$COMPLETION_DIR/bash-completion/completions/$alias"
			put_link "$main.fish" "$COMPLETION_DIR/fish/vendor_completions.d/$alias.fish"
		done
	done
	rm -rf "$tmp"
	info "installed bash, zsh and fish completion under $COMPLETION_DIR"
}

remove_completions() {
	for role in $COMPLETION_ROLES; do
		for name in $(printf '%s' "$role" | tr ':' ' '); do
			remove "$COMPLETION_DIR/bash-completion/completions/$name"
			remove "$COMPLETION_DIR/fish/vendor_completions.d/$name.fish"
		done
		remove "$COMPLETION_DIR/zsh/site-functions/_${role%%:*}"
	done
}

install_manpages() {
	[ -d "$TOP/man" ] || return 0
	count=0
	for page in "$TOP"/man/*.[158]; do
		[ -f "$page" ] || continue
		section=${page##*.}
		put_file 0644 "$page" "$MAN_DIR/man$section/$(basename "$page")"
		count=$((count + 1))
	done
	put_link ctrl-exec.1 "$MAN_DIR/man1/ctrl-exec-dispatcher.1"
	put_link ctrl-exec.1 "$MAN_DIR/man1/ced.1"
	put_link ctrl-exec-agent.8 "$MAN_DIR/man8/cea.8"
	info "installed $count manual pages under $MAN_DIR"
}

# --- services ------------------------------------------------------------------------

install_service() { # agent|api
	svc=ctrl-exec-$1
	case $INIT in
	systemd)
		put_file 0644 "$PKG/systemd/$svc.service" "$SYSTEMD_DIR/$svc.service"
		info "installed $SYSTEMD_DIR/$svc.service"
		if [ "$RENEWAL" = yes ]; then
			put_file 0644 "$PKG/systemd/$svc.service.d/10-renewal.conf" \
				"$SYSTEMD_DIR/$svc.service.d/10-renewal.conf"
			info "installed $SYSTEMD_DIR/$svc.service.d/10-renewal.conf"
		fi
		if systemd_live; then
			systemctl daemon-reload
		fi
		;;
	openrc)
		put_file 0755 "$PKG/openrc/$svc" "$INITD_DIR/$svc"
		info "installed $INITD_DIR/$svc (OpenRC)"
		;;
	procd)
		if [ "$1" = api ]; then
			warn "no procd script for ctrl-exec-api: start it by hand or from another supervisor"
			return 0
		fi
		put_file 0755 "$PKG/openwrt/$svc.init" "$INITD_DIR/$svc"
		info "installed $INITD_DIR/$svc (procd)"
		put_file 0755 "$PKG/openwrt/99-ctrl-exec-agent-firewall" \
			"$UCI_DEFAULTS_DIR/99-ctrl-exec-agent-firewall"
		if [ "$STAGING" = no ]; then
			"$INITD_DIR/$svc" enable
			if "$UCI_DEFAULTS_DIR/99-ctrl-exec-agent-firewall"; then
				info "opened TCP 7443 in the OpenWrt firewall"
			else
				warn "firewall rule not applied now; it runs from $UCI_DEFAULTS_DIR at next boot"
			fi
		fi
		;;
	none)
		info "no service manager selected: start $svc by hand"
		;;
	esac
}

# --- roles ----------------------------------------------------------------------------

install_control() {
	info ""
	info "== control host (ctrl-exec)"
	ensure_group "$CONTROL_GROUP" "$OPENWRT_CONTROL_GID"
	make_dir 0750 "root:$CONTROL_GROUP" "$CONF_DIR"
	make_dir 0755 root:root "$STATE_DIR"
	for d in pairing agents locks runs; do
		make_dir 0770 "root:$CONTROL_GROUP" "$STATE_DIR/$d"
	done
	put_config 0640 "root:$CONTROL_GROUP" "$PKG/examples/ctrl-exec.conf.example" "$CONF_DIR/ctrl-exec.conf"
	# The reference copy the quick start copies over the hook; always current.
	put_file 0755 "$PKG/examples/auth-hook.example" "$LIB_DIR/auth-hook.example"
	info "installed $LIB_DIR/auth-hook.example"
	if [ -e "$(p "$CONF_DIR/auth-hook")" ]; then
		info "kept existing $CONF_DIR/auth-hook"
	else
		put_config 0755 root:root "$PKG/examples/auth-hook.example" "$CONF_DIR/auth-hook"
		info "  this hook DENIES every run and ping until you give it a policy"
		info "  (or remove the auth_hook line from ctrl-exec.conf to allow all CLI calls)"
	fi
}

install_api() {
	info ""
	info "== API service (ctrl-exec-api)"
	install_service api
}

install_agent() {
	info ""
	info "== agent (ctrl-exec-agent)"
	ensure_group "$AGENT_GROUP" "$OPENWRT_AGENT_ID"
	ensure_user "$AGENT_USER" "$AGENT_GROUP" "$OPENWRT_AGENT_ID"
	if [ "$RENEWAL" = yes ]; then
		make_dir 0770 "root:$AGENT_GROUP" "$AGENT_DIR"
		chmod 0770 "$(p "$AGENT_DIR")"
		own "root:$AGENT_GROUP" "$AGENT_DIR"
		info "$AGENT_DIR is group-writable (0770) so the agent can store renewed certificates"
	else
		make_dir 0750 "root:$AGENT_GROUP" "$AGENT_DIR"
	fi
	put_config 0640 "root:$AGENT_GROUP" "$PKG/examples/agent.conf.example" "$AGENT_DIR/agent.conf"
	put_config 0640 "root:$AGENT_GROUP" "$PKG/examples/scripts.conf.example" "$AGENT_DIR/scripts.conf"
	make_dir 0750 "root:$AGENT_GROUP" "$SCRIPTS_DIR"

	helper=$SCRIPTS_DIR/update-ctrl-exec-serial
	if [ -f "$(p "$helper")" ] && [ ! -L "$(p "$helper")" ]; then
		mv -f "$(p "$helper")" "$(p "$helper").orig"
		warn "moved the old $helper aside to $helper.orig"
	fi
	# Relative, so a staged tree is self-contained.
	put_link ../../usr/local/bin/ctrl-exec "$helper"
	info "linked $helper -> $BIN_DIR/ctrl-exec"
	install_service agent
}

# --- uninstall ------------------------------------------------------------------------

stop_services() {
	[ "$STAGING" = no ] || return 0
	for svc in ctrl-exec-agent ctrl-exec-api; do
		if systemd_live && [ -f "$SYSTEMD_DIR/$svc.service" ]; then
			systemctl disable --now "$svc.service" 2>/dev/null || true
			info "stopped and disabled $svc.service"
		fi
		if [ -x "$INITD_DIR/$svc" ]; then
			if have rc-service; then
				rc-service "$svc" stop 2>/dev/null || true
				rc-update del "$svc" 2>/dev/null || true
			else
				"$INITD_DIR/$svc" stop 2>/dev/null || true
				"$INITD_DIR/$svc" disable 2>/dev/null || true
			fi
			info "stopped $svc"
		fi
	done
}

uninstall() {
	info "Removing ctrl-exec programs and service files${ROOT:+ under $ROOT}"
	stop_services
	remove "$BIN_DIR/ctrl-exec"
	for name in $ALIASES; do
		remove "$BIN_DIR/$name"
	done
	if [ -L "$(p "$SCRIPTS_DIR/update-ctrl-exec-serial")" ]; then
		remove "$SCRIPTS_DIR/update-ctrl-exec-serial"
	fi
	for svc in ctrl-exec-agent ctrl-exec-api; do
		remove "$SYSTEMD_DIR/$svc.service"
		remove "$SYSTEMD_DIR/$svc.service.d/10-renewal.conf"
		rmdir "$(p "$SYSTEMD_DIR/$svc.service.d")" 2>/dev/null || true
		remove "$INITD_DIR/$svc"
	done
	remove "$UCI_DEFAULTS_DIR/99-ctrl-exec-agent-firewall"
	remove "$LIB_DIR/auth-hook.example"
	remove_completions
	rmdir "$(p "$LIB_DIR")" 2>/dev/null || true
	for page in ctrl-exec.1 ctrl-exec-dispatcher.1 ced.1 ctrl-exec.conf.5 ctrl-exec-agent.conf.5 \
		ctrl-exec-agent.8 cea.8 ctrl-exec-api.8 update-ctrl-exec-serial.8; do
		remove "$MAN_DIR/man${page##*.}/$page"
	done
	if systemd_live; then
		systemctl daemon-reload
	fi

	info ""
	info "Kept (configuration, keys, certificates, registry and scripts):"
	for d in "$CONF_DIR" "$AGENT_DIR" "$STATE_DIR" "$SCRIPTS_DIR" "$LIB_DIR"; do
		if [ -e "$(p "$d")" ]; then
			info "  $d"
		fi
	done
	info "and the user and group $AGENT_USER and the group $CONTROL_GROUP, if they exist."
	info "Delete them yourself once nothing needs the keys any more."
}

# --- next steps -----------------------------------------------------------------------

# agent_dir_writable: did this or an earlier run (--renewal) open the agent
# directory to the service's group?
agent_dir_writable() {
	[ -n "$(find "$(p "$AGENT_DIR")" -maxdepth 0 -perm -020 2>/dev/null)" ]
}

next_steps() {
	info ""
	if [ "$STAGING" = yes ]; then
		info "Staged under $ROOT. Nothing outside it was touched: no accounts were"
		info "created, no ownership was changed and no service manager was called."
		info "Try it with: CTRL_EXEC_ROOT=$ROOT $ROOT$BIN_DIR/ctrl-exec --help"
		return 0
	fi
	info "Next steps"
	if [ "$DO_CONTROL" = yes ]; then
		info "  control host:"
		info "    ctrl-exec setup-ca && ctrl-exec setup-ctrl-exec     (as root, once)"
		info "    edit $CONF_DIR/auth-hook: it denies everything as installed"
		info "      ($LIB_DIR/auth-hook.example is a fresh copy to start from)"
		info "    ctrl-exec pairing-mode                              (as root: approve agents)"
		info "    usermod -aG $CONTROL_GROUP USER: members run ctrl-exec ping/run without sudo"
		info "      (ctrl-exec.key is 0640 root:$CONTROL_GROUP; ca.key stays 0600 root)"
	fi
	if [ "$DO_API" = yes ]; then
		info "  API: set api_bind/api_port (and api_cert/api_key for TLS) in ctrl-exec.conf,"
		info "    then start ctrl-exec-api.  It denies all requests until an auth hook or"
		info "    api_auth_default = allow says otherwise."
	fi
	if [ "$DO_AGENT" = yes ]; then
		info "  agent:"
		info "    list scripts in $AGENT_DIR/scripts.conf, put them in $SCRIPTS_DIR"
		info "    ctrl-exec-agent request-pairing --dispatcher <control-host>   (as root)"
		info "    ctrl-exec-agent self-check, then start the ctrl-exec-agent service"
		if ! agent_dir_writable; then
			info "    Without --renewal the agent cannot store renewed certificates or a"
			info "    rotated control-host serial; re-run with --renewal to allow it."
		fi
	fi
	case $INIT in
	systemd) info "  services: systemctl enable --now ctrl-exec-agent (or ctrl-exec-api)" ;;
	openrc) info "  services: rc-update add ctrl-exec-agent && rc-service ctrl-exec-agent start" ;;
	procd) info "  services: /etc/init.d/ctrl-exec-agent start" ;;
	*) ;;
	esac
}

# --- main -----------------------------------------------------------------------------

if [ "$STAGING" = yes ]; then
	info "Staging into $ROOT: skipping account creation, ownership changes and"
	info "service-manager calls (service files: $INIT)."
fi

if [ "$DO_UNINSTALL" = yes ]; then
	uninstall
	exit 0
fi

# Check what can be checked before changing anything.
if [ "$DO_API" = yes ] && [ "$DO_CONTROL" = no ] && [ ! -f "$(p "$CONF_DIR/ctrl-exec.conf")" ]; then
	die "--api needs the control host role: run with --dispatcher first (or both together)"
fi

install_programs
if [ "$DO_CONTROL" = yes ]; then install_control; fi
if [ "$DO_API" = yes ]; then install_api; fi
if [ "$DO_AGENT" = yes ]; then install_agent; fi
next_steps
