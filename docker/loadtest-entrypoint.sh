#!/bin/sh
# Entrypoint of the loadtest image: run the harness as the user who owns the checkout, so that
# its results in ./runs are yours whatever your uid (1000, 1001 on many CI runners, ...), even
# when Docker created ./runs itself, owned by root, because it did not exist yet.
#
# It starts as root, hands runs/ (the ./runs bind mount) and data/ (the seeded files of a service
# the harness starts itself) to the uid and gid that own the checkout, which docker-compose.yml
# mounts read-only at $LOADTEST_CHECKOUT for this alone, and runs "$@" as them through setpriv
# (util-linux, in every Debian image): nothing runs as root after this script.
set -eu

checkout="${LOADTEST_CHECKOUT:-/srv/checkout}"

if [ "$(id -u)" != 0 ]; then
    # Started with `--user`: that user is whom the results belong to.
    exec "$@"
fi

mkdir -p runs data
# Without the checkout (a plain `docker run` with only runs/ mounted), runs/ tells whose it is.
if [ -d "$checkout" ]; then owner="$checkout"; else owner=runs; fi
uid=$(stat -c %u "$owner")
gid=$(stat -c %g "$owner")

if [ "$uid" = 0 ]; then
    # root's own checkout, or rootless Docker/Podman, where your host user is root in here:
    # either way root in here writes files that are yours.
    exec "$@"
fi

# Only the runs/ folder itself, and only when root owns it (what Docker creates): earlier runs,
# and a runs/ you made yourself, keep their owners.
if [ "$(stat -c %u runs)" = 0 ]; then
    chown "$uid:$gid" runs
fi
chown "$uid:$gid" data
# That uid has no passwd entry here, so HOME would stay root's (0700), where libpq and asyncpg
# look for ~/.pgpass and ~/.postgresql.
export HOME=/tmp
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
