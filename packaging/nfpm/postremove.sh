#!/bin/sh
# Package post-remove script. Keys, certificates, the registry, scripts and
# the accounts are the operator's: never removed, not even on purge (dpkg
# removes only the configuration files the package shipped).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
