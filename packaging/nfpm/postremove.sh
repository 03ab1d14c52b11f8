#!/bin/sh
# Package post-remove script. Keys, certificates, the registry, scripts and
# the accounts are the operator's: never removed, not even on purge (dpkg
# removes only the configuration files the package shipped).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi

# dpkg takes every empty directory the package listed, /usr/local/bin too:
# put back the /usr/local directories as Debian's base-files makes them.
if [ -f /etc/debian_version ]; then
	for d in /usr/local /usr/local/bin /usr/local/lib /usr/local/share /usr/local/share/man; do
		[ -d "$d" ] && continue
		mkdir -p "$d"
		if [ -f /etc/staff-group-for-usr-local ]; then
			chown root:staff "$d" 2>/dev/null || true
			chmod 2775 "$d" 2>/dev/null || true
		fi
	done
fi
exit 0
