#!/bin/sh
# version.sh: the release version make stamps into the binary.
#   on a commit tagged vX.Y.Z (clean tree)  ->  X.Y.Z
#   anywhere else                           ->  <next>-dev+<commit>[.dirty]
#   no git                                  ->  <next>-dev
# <next> is pkg/buildinfo/VERSION: the release this tree is heading for
# (bump it right after tagging). "version.sh commit" prints the commit.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
next=$(tr -d ' \n' <"$top/pkg/buildinfo/VERSION")

commit=$(git -C "$top" rev-parse --short=12 HEAD 2>/dev/null) || commit=
dirty=
if [ -n "$commit" ] && [ -n "$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=.dirty
fi
if [ "${1:-}" = commit ]; then
	printf '%s\n' "${commit:-unknown}$dirty"
	exit 0
fi

if [ -z "$commit" ]; then
	printf '%s-dev\n' "$next"
	exit 0
fi
tag=$(git -C "$top" describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null) || tag=
if [ -n "$tag" ] && [ -z "$dirty" ]; then
	printf '%s\n' "${tag#v}"
else
	printf '%s-dev+%s%s\n' "$next" "$commit" "$dirty"
fi
