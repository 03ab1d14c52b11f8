#!/usr/bin/env bash
# make demo-ha: two API nodes sharing one etcd (state_backend = etcd) on
# loopback: an agent pairs through node A, a run goes through node B, and
# its status is read back from node A. Everything lives in a temp dir that
# is removed at the end; every process started here runs in its own
# process group and that group is killed on the way out.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${DEMO_BIN:-$here/bin} # the tests point it at the binary they built
command -v etcd >/dev/null || { echo "demo-ha needs etcd on PATH (apt-get install etcd-server)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ctrl-exec-demo-ha.XXXXXX")
# Ports below the kernel's ephemeral range: one inside it may be the local
# end of an outgoing connection or its TIME_WAIT, which a connect does not
# see but which makes etcd's bind fail (the tests' bursts leave thousands).
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_lo=32768
[ "$eph_lo" -gt 21000 ] 2>/dev/null || eph_lo=60000
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % (eph_lo - 20000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "no free port found" >&2; exit 1
}
etcd_port=$(free_port) peer_port=$(free_port) pair_port=$(free_port) agent_port=$(free_port)
port_a=$(free_port) port_b=$(free_port)
groups=()

cleanup() {
	for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: CMD in a new session (setsid execs it: its pid is the
# group id), output in $work/NAME.out.
start() {
	local name=$1
	shift
	setsid "$@" >"$work/$name.out" 2>&1 </dev/null &
	groups+=($!)
}
# wait_for WHAT CMD...: poll CMD (10 s at most).
wait_for() {
	local what=$1
	shift
	for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
	echo "timed out waiting for $what" >&2
	tail -n 20 "$work"/*.out >&2 || true
	exit 1
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
as_a() { CTRL_EXEC_ROOT=$work/node-a CTRL_EXEC_LOG=$work/node-a.log "$@"; }
as_b() { CTRL_EXEC_ROOT=$work/node-b CTRL_EXEC_LOG=$work/node-b.log "$@"; }
as_agt() { CTRL_EXEC_ROOT=$work/agent CTRL_EXEC_LOG=$work/agent.log "$@"; }

step "etcd: one member on 127.0.0.1:$etcd_port"
start etcd etcd --name demo --data-dir "$work/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "demo=http://127.0.0.1:$peer_port"
wait_for "etcd" curl -fsS "http://127.0.0.1:$etcd_port/health"
curl -sS "http://127.0.0.1:$etcd_port/health"; echo

step "node A: CA and ctrl-exec certificate (ECDSA keys keep the demo quick)"
mkdir -p "$work/node-a/etc/ctrl-exec" "$work/node-b/etc/ctrl-exec" \
	"$work/agent/etc/ctrl-exec-agent" "$work/agent/opt/ctrl-exec-scripts"
as_a "$bin/ctrl-exec" setup-ca --key-type ecdsa-p256
as_a "$bin/ctrl-exec" setup-ctrl-exec
step "node B: copies of A's CA and certificate, as the docs say"
cp -p "$work"/node-a/etc/ctrl-exec/{ca.crt,ca.key,ca.serial,ctrl-exec.crt,ctrl-exec.key} "$work/node-b/etc/ctrl-exec/"
for n in a b; do
	port=$port_a
	[ "$n" = b ] && port=$port_b
	etc=$work/node-$n/etc/ctrl-exec
	cat >"$etc/ctrl-exec.conf" <<CONF
cert = $etc/ctrl-exec.crt
key = $etc/ctrl-exec.key
ca = $etc/ca.crt
api_bind = 127.0.0.1
api_port = $port
api_auth_default = allow
state_backend = etcd
etcd_endpoints = http://127.0.0.1:$etcd_port
CONF
	echo "node ${n^^}: $etc/ctrl-exec.conf"
	sed 's/^/  /' "$etc/ctrl-exec.conf"
done

step "agent: config and an allowlisted script"
cat >"$work/agent/etc/ctrl-exec-agent/agent.conf" <<CONF
port = $agent_port
cert = $work/agent/etc/ctrl-exec-agent/agent.crt
key = $work/agent/etc/ctrl-exec-agent/agent.key
ca = $work/agent/etc/ctrl-exec-agent/ca.crt
script_dirs = $work/agent/opt/ctrl-exec-scripts
CONF
cat >"$work/agent/opt/ctrl-exec-scripts/where.sh" <<'SCRIPT'
#!/bin/sh
echo "ran on $(hostname) with args: $*"
SCRIPT
chmod 755 "$work/agent/opt/ctrl-exec-scripts/where.sh"
echo "where = $work/agent/opt/ctrl-exec-scripts/where.sh" >"$work/agent/etc/ctrl-exec-agent/scripts.conf"

step "pair through node A: pairing-mode and approve on A"
start pairing env CTRL_EXEC_ROOT="$work/node-a" CTRL_EXEC_LOG="$work/node-a.log" \
	"$bin/ctrl-exec" pairing-mode --port "$pair_port"
wait_for "pairing-mode on A" grep -q 'Pairing mode active' "$work/pairing.out"
start request env CTRL_EXEC_ROOT="$work/agent" CTRL_EXEC_LOG="$work/agent.log" \
	"$bin/ctrl-exec-agent" request-pairing --key-type ecdsa-p256 --dispatcher 127.0.0.1 --port "$pair_port" --timeout 60
wait_for "the pairing request" sh -c "CTRL_EXEC_ROOT='$work/node-a' '$bin/ctrl-exec' list-requests --json | grep -q '\"id\"'"
as_a "$bin/ctrl-exec" list-requests
reqid=$(as_a "$bin/ctrl-exec" list-requests --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
as_a "$bin/ctrl-exec" approve "$reqid"
wait_for "the agent's certificate" as_agt "$bin/ctrl-exec-agent" pairing-status
as_agt "$bin/ctrl-exec-agent" pairing-status
echo "node B lists the agent paired through A (the registry is in etcd):"
as_b "$bin/ctrl-exec" list-agents

step "API nodes A (port $port_a) and B (port $port_b), agent on port $agent_port"
start agent env CTRL_EXEC_ROOT="$work/agent" CTRL_EXEC_LOG="$work/agent.log" "$bin/ctrl-exec-agent" serve
start api-a env CTRL_EXEC_ROOT="$work/node-a" CTRL_EXEC_LOG="$work/node-a.log" \
	"$bin/ctrl-exec-api" --config "$work/node-a/etc/ctrl-exec/ctrl-exec.conf"
start api-b env CTRL_EXEC_ROOT="$work/node-b" CTRL_EXEC_LOG="$work/node-b.log" \
	"$bin/ctrl-exec-api" --config "$work/node-b/etc/ctrl-exec/ctrl-exec.conf"
for p in "$port_a" "$port_b"; do wait_for "the API on $p" curl -fsS "http://127.0.0.1:$p/health"; done
wait_for "the agent" bash -c "exec 3<>/dev/tcp/127.0.0.1/$agent_port"

step "run through node B: POST http://127.0.0.1:$port_b/run"
answer=$(curl -sS -X POST "http://127.0.0.1:$port_b/run" -H 'Content-Type: application/json' \
	-d "{\"hosts\":[\"127.0.0.1:$agent_port\"],\"script\":\"where\",\"args\":[\"via-B\"]}")
echo "$answer"
run_id=$(printf '%s' "$answer" | sed -n 's/.*"reqid": *"\([^"]*\)".*/\1/p')
[ -n "$run_id" ] || { echo "no reqid in the answer" >&2; exit 1; }

step "status from node A: GET http://127.0.0.1:$port_a/status/$run_id"
status=$(curl -sS "http://127.0.0.1:$port_a/status/$run_id")
echo "$status"
case $status in *'"via-B'*) ;; *) echo "node A does not see the run made through B" >&2; exit 1 ;; esac
echo "no run files on either node (the records are in etcd):"
ls -A "$work/node-a/var/lib/ctrl-exec/runs" "$work/node-b/var/lib/ctrl-exec/runs" 2>/dev/null || echo "  (none)"

echo
echo "Demo complete; stopping etcd, both API nodes and the agent, removing $work."
