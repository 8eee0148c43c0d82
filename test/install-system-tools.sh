#!/usr/bin/env bash
# Debian tools some tests use when present: getfattr/setfattr (package attr: xattrs in backups) and
# rclone (a second, differently behaving WebDAV server). `npm test` runs this first (pretest). On a
# machine where they cannot be installed (not root, no apt, no network) the tests that need them are
# skipped with a comment, and everything else still runs.
set -u
need=()
command -v getfattr >/dev/null 2>&1 || need+=(attr)
command -v rclone >/dev/null 2>&1 || need+=(rclone)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools: ${need[*]} missing and cannot be installed here (need root and apt-get); dependent tests will be skipped" >&2
  exit 0
fi
echo "test tools: installing ${need[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! timeout 300 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  timeout 300 apt-get update -qq >/dev/null 2>&1
  timeout 300 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "test tools: could not install ${need[*]}; dependent tests will be skipped" >&2
fi
exit 0
