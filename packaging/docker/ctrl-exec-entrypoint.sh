#!/bin/sh
# Entrypoint of the control-host image. Every step is guarded, so restarts
# are safe and files already on the volumes are never replaced.
#  1. No /etc/ctrl-exec/ctrl-exec.conf: write one from API_BIND (127.0.0.1),
#     API_PORT (7445), API_AUTH_DEFAULT (deny) and READ_TIMEOUT (only if set).
#     auth_hook is set only if /etc/ctrl-exec/auth-hook already exists (mount
#     your hook there); otherwise api_auth_default decides every request.
#     Mount your own ctrl-exec.conf to skip this step.
#  2. No /etc/ctrl-exec/ca.crt: create the CA and the control certificate.
#  3. Replace this shell with ctrl-exec-api (PID 1, gets Docker's signals).
# Arguments are passed to ctrl-exec-api.
set -eu

conf_dir=/etc/ctrl-exec
conf=$conf_dir/ctrl-exec.conf

log() { printf '[entrypoint] %s\n' "$*"; }

if [ ! -f "$conf" ]; then
	log "writing $conf from the environment"
	{
		printf '# Written by the container entrypoint on first start; edit freely.\n'
		printf '# Reference: man 5 ctrl-exec.conf\n'
		printf 'cert = %s/ctrl-exec.crt\n' "$conf_dir"
		printf 'key  = %s/ctrl-exec.key\n' "$conf_dir"
		printf 'ca   = %s/ca.crt\n' "$conf_dir"
		printf 'api_bind = %s\n' "${API_BIND:-127.0.0.1}"
		printf 'api_port = %s\n' "${API_PORT:-7445}"
		printf 'api_auth_default = %s\n' "${API_AUTH_DEFAULT:-deny}"
		if [ -n "${READ_TIMEOUT:-}" ]; then
			printf 'read_timeout = %s\n' "$READ_TIMEOUT"
		fi
		if [ -f "$conf_dir/auth-hook" ]; then
			printf 'auth_hook = %s/auth-hook\n' "$conf_dir"
		fi
	} >"$conf.tmp"
	chmod 0640 "$conf.tmp"
	chgrp ctrl-exec "$conf.tmp" 2>/dev/null || true
	mv "$conf.tmp" "$conf"
fi

if [ ! -f "$conf_dir/ca.crt" ]; then
	log "first start: creating the CA and the control certificate"
	ctrl-exec setup-ca
	ctrl-exec setup-ctrl-exec </dev/null
	log "back up $conf_dir/ca.key somewhere safe and offline"
fi

# A reference copy for writing a hook; never made active automatically.
if [ ! -e "$conf_dir/auth-hook.example" ]; then
	cp /usr/local/share/ctrl-exec/auth-hook.example "$conf_dir/auth-hook.example"
fi

log "starting ctrl-exec-api"
exec ctrl-exec-api "$@"
