#!/usr/bin/env bash
# Entrypoint of the pgbouncer image: write pgbouncer.ini and its auth file from the environment,
# then run PgBouncer (Debian 12's 1.18) in the foreground, logging to stderr.
#
# The same settings as the PgBouncer the harness starts (db/pgbouncer/config.py): transaction
# pooling; the startup parameters the drivers send for their statement timeout (libpq's
# `options`, asyncpg's `statement_timeout`), which PgBouncer 1.18 would refuse, dropped, and the
# timeout set on every server connection instead. Unlike the harness's it serves the compose
# network, so clients log in with the password (scram-sha-256), and any database of the server
# (`*`): `serve` creates the iobench database through the maintenance one.
#
# POSTGRES_PASSWORD is required; the rest have defaults. tests/test_compose.py runs this script
# and the real pgbouncer with what it writes.
set -euo pipefail

dir="${PGBOUNCER_CONFIG_DIR:-/tmp/pgbouncer}"
host="${POSTGRES_HOST:-postgres}"
port="${POSTGRES_PORT:-5432}"
user="${POSTGRES_USER:-postgres}"
password="${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
timeout_ms="${PGBOUNCER_STATEMENT_TIMEOUT_MS:-15000}"

# A value of a connection string: single-quoted, a quote doubled (PgBouncer's loader.c).
quote() { local q="'"; printf "'%s'" "${1//$q/$q$q}"; }
# A field of the auth file: double-quoted, a double quote doubled.
dquote() { printf '"%s"' "${1//\"/\"\"}"; }

umask 077  # the password is in the auth file
mkdir -p "$dir"
cat > "$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$(quote "$host") port=$(quote "$port") connect_query=$(quote "SET statement_timeout = $timeout_ms")

[pgbouncer]
listen_addr = ${PGBOUNCER_LISTEN_ADDR:-0.0.0.0}
listen_port = ${PGBOUNCER_LISTEN_PORT:-5432}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = ${PGBOUNCER_MAX_CLIENT_CONN:-1000}
ignore_startup_parameters = options,statement_timeout
query_wait_timeout = ${PGBOUNCER_QUERY_WAIT_TIMEOUT:-10}
server_connect_timeout = 5
server_login_retry = 1
stats_users = $user
log_connections = 0
log_disconnections = 0
EOF
printf '%s %s\n' "$(dquote "$user")" "$(dquote "$password")" > "$dir/userlist.txt"

exec pgbouncer "$dir/pgbouncer.ini"
