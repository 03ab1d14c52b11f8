#!/usr/bin/env bash
# make demo: a throwaway control host and agent on loopback, paired by the
# script, then a run with awkward arguments, a ping table and the log lines.
# Everything lives in a temp dir that is removed at the end, and every
# process it starts is stopped and waited for: nothing is left running.
# DEMO_BIN names another directory holding the binary and its role names.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${DEMO_BIN:-$here/bin}
work=$(mktemp -d "${TMPDIR:-/tmp}/ctrl-exec-demo.XXXXXX")
ctl="$work/control"
agt="$work/agent"
# A loopback port nobody answers on (override with DEMO_PAIR_PORT / DEMO_AGENT_PORT).
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "no free port found" >&2; exit 1
}
pair_port=${DEMO_PAIR_PORT:-$(free_port)}
agent_port=${DEMO_AGENT_PORT:-$(free_port)}
# PIDs of the background processes: the programs themselves, started with
# exec-ing `env` (not through a shell function, whose $! would be a subshell
# that dies on kill while the program runs on).
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Each side gets its own root and log. Keys are full-size (RSA 4096), so
# setup and pairing take a few seconds.
ctl_env=(env "CTRL_EXEC_ROOT=$ctl" "CTRL_EXEC_LOG=$work/control.log")
agt_env=(env "CTRL_EXEC_ROOT=$agt" "CTRL_EXEC_LOG=$work/agent.log" CTRL_EXEC_HOSTNAME=demo-agent)
as_ctl() { "${ctl_env[@]}" "$@"; }
as_agt() { "${agt_env[@]}" "$@"; }
# finished <pid>: the job was waited for; its PID may be reused, so never kill it.
finished() {
	local keep=() p
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}
# wait_for <what> <command...>: poll up to 30 s for the command to succeed.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "demo: gave up waiting for $what" >&2
	exit 1
}

mkdir -p "$ctl/etc/ctrl-exec" "$ctl/var/lib/ctrl-exec/pairing" "$ctl/var/lib/ctrl-exec/agents" \
	"$agt/etc/ctrl-exec-agent" "$agt/opt/ctrl-exec-scripts"

step "control host: a private CA and the ctrl-exec certificate"
as_ctl "$bin/ctrl-exec" setup-ca
as_ctl "$bin/ctrl-exec" setup-ctrl-exec
cat > "$ctl/etc/ctrl-exec/ctrl-exec.conf" <<CONF
cert = $ctl/etc/ctrl-exec/ctrl-exec.crt
key = $ctl/etc/ctrl-exec/ctrl-exec.key
ca = $ctl/etc/ctrl-exec/ca.crt
read_timeout = 30
CONF

step "agent: config and an allowlisted demo script"
cat > "$agt/etc/ctrl-exec-agent/agent.conf" <<CONF
port = $agent_port
cert = $agt/etc/ctrl-exec-agent/agent.crt
key = $agt/etc/ctrl-exec-agent/agent.key
ca = $agt/etc/ctrl-exec-agent/ca.crt
script_dirs = $agt/opt/ctrl-exec-scripts

[tags]
role = demo
CONF
cat > "$agt/opt/ctrl-exec-scripts/show-args.sh" <<'SCRIPT'
#!/bin/sh
# Prints each argument exactly as received, and the JSON context from stdin.
i=0
for a in "$@"; do i=$((i+1)); printf 'arg %d: [%s]\n' "$i" "$a"; done
printf 'context: %s\n' "$(cat)"
SCRIPT
chmod 755 "$agt/opt/ctrl-exec-scripts/show-args.sh"
echo "show-args = $agt/opt/ctrl-exec-scripts/show-args.sh" > "$agt/etc/ctrl-exec-agent/scripts.conf"
as_agt "$bin/ctrl-exec-agent" self-check

step "pairing over loopback (the script plays the operator)"
"${ctl_env[@]}" "$bin/ctrl-exec" pairing-mode --port "$pair_port" </dev/null >"$work/pairing.out" 2>&1 &
pids+=($!)
wait_for "pairing-mode" grep -q 'Pairing mode active' "$work/pairing.out"
cat "$work/pairing.out"
# The agent waits for the operator's answer in the foreground, as a job of
# this script, so the script can wait for it to finish.
"${agt_env[@]}" "$bin/ctrl-exec-agent" request-pairing --dispatcher 127.0.0.1 --port "$pair_port" \
	</dev/null >"$work/request.out" 2>&1 &
request=$!
pids+=("$request")
request_queued() { [[ $(as_ctl "$bin/ctrl-exec" list-requests --json) == *'"id"'* ]]; }
wait_for "the pairing request" request_queued
as_ctl "$bin/ctrl-exec" list-requests
reqid=$(as_ctl "$bin/ctrl-exec" list-requests --json | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
as_ctl "$bin/ctrl-exec" approve "$reqid"
wait "$request"
finished "$request"
sed 's/^/  agent: /' "$work/request.out"
as_agt "$bin/ctrl-exec-agent" pairing-status
as_ctl "$bin/ctrl-exec" list-agents

step "agent: serving on port $agent_port"
"${agt_env[@]}" "$bin/ctrl-exec-agent" serve >"$work/agent.out" 2>&1 &
pids+=($!)
wait_for "the agent" grep -q 'ACTION=start' "$work/agent.log"

step "run: arguments with spaces and shell metacharacters arrive untouched"
as_ctl "$bin/ctrl-exec" run "127.0.0.1:$agent_port" show-args --username demo \
	-- 'two words' '$(rm -rf /)' 'semi;colon' '*' "it's \"quoted\""

step "ping"
as_ctl "$bin/ctrl-exec" ping "127.0.0.1:$agent_port" || true

step "syslog-style lines (control host, then agent)"
sed 's/^/  /' "$work/control.log"
sed 's/^/  /' "$work/agent.log"
echo
echo "Demo complete; removing $work."
