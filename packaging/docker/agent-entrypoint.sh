#!/bin/sh
# Entrypoint of the agent image.
#  - Seeds agent.conf and scripts.conf from the examples if the volume has
#    none, and links update-ctrl-exec-serial into the scripts volume.
#  - Not paired yet (no /etc/ctrl-exec-agent/agent.crt): asks the control host
#    at $DISPATCHER_HOST (port $DISPATCHER_PORT, default 7444) for pairing,
#    waits for the operator's answer, and exits 0 once approved. Start the
#    container again to serve. ("docker run" prints the pairing code to
#    compare with the control host.) $CTRL_EXEC_CA_FINGERPRINT, if set, pins
#    the control host's CA (sha256:<hex> from "ctrl-exec setup-ca").
#  - Paired: replaces this shell with "ctrl-exec-agent serve" (PID 1).
# Arguments are passed to "ctrl-exec-agent serve".
set -eu

conf_dir=/etc/ctrl-exec-agent
scripts_dir=/opt/ctrl-exec-scripts
examples=/usr/local/share/ctrl-exec

log() { printf '[entrypoint] %s\n' "$*"; }

for f in agent.conf scripts.conf; do
	if [ ! -e "$conf_dir/$f" ]; then
		cp "$examples/$f.example" "$conf_dir/$f"
		chmod 0640 "$conf_dir/$f"
		log "wrote $conf_dir/$f from the example"
	fi
done
if [ ! -e "$scripts_dir/update-ctrl-exec-serial" ]; then
	ln -s /usr/local/bin/ctrl-exec "$scripts_dir/update-ctrl-exec-serial"
fi

if [ ! -f "$conf_dir/agent.crt" ]; then
	if [ -z "${DISPATCHER_HOST:-}" ]; then
		log "not paired and DISPATCHER_HOST is not set: set it to the control host's name or address" >&2
		exit 1
	fi
	log "not paired: requesting pairing from $DISPATCHER_HOST"
	ctrl-exec-agent request-pairing --dispatcher "$DISPATCHER_HOST" --port "${DISPATCHER_PORT:-7444}" \
		${CTRL_EXEC_CA_FINGERPRINT:+--ca-fingerprint "$CTRL_EXEC_CA_FINGERPRINT"}
	log "paired; start the container again to serve"
	exit 0
fi

log "starting ctrl-exec-agent serve"
exec ctrl-exec-agent serve "$@"
