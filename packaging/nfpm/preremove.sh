#!/bin/sh
# Package pre-remove script: stop the services on removal, not on upgrade
# (deb: "remove"; apk and ipk run it only on removal).
case ${1:-remove} in
upgrade | 1) exit 0 ;; # deb upgrade; rpm-style count
esac
for svc in ctrl-exec-agent ctrl-exec-api; do
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now "$svc.service" 2>/dev/null || true
	elif [ -x "/etc/init.d/$svc" ]; then
		"/etc/init.d/$svc" stop 2>/dev/null || true
	fi
done
exit 0
