#!/bin/sh
# Package post-install script. Services are installed, never enabled or
# started (as install.sh); systemd is told about new or changed units.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
