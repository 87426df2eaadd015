#!/bin/bash
# docker-entrypoint.sh of localhost/pgprov-postgres:15: the official postgres image's contract
# (POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB, PGDATA, PGPORT, /docker-entrypoint-initdb.d,
# its log lines) for the image tests/containers/setup.sh builds from Debian's postgresql-15.
#
# Deliberate difference from the official image: TCP connections from 127.0.0.1 use
# scram-sha-256 too (the official initdb leaves them on trust), so password checks in tests
# mean something even with host networking.
set -Eeuo pipefail
shopt -s nullglob

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
: "${POSTGRES_INITDB_ARGS:=}"
export POSTGRES_USER POSTGRES_DB

# Like the official image: `docker run img -c x=y` means `postgres -c x=y`.
if [ "${1:-}" = "" ] || [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
	# Root only prepares directories; the server never runs as root.
	mkdir -p "$PGDATA" /var/run/postgresql
	chown -R postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
		EOM
		exit 1
	fi

	# Unquoted on purpose: POSTGRES_INITDB_ARGS is a word list, as in the official image;
	# given after our defaults, its --auth-* options win.
	# shellcheck disable=SC2086
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" $POSTGRES_INITDB_ARGS
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
	printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# Temporary server: unix socket only (nothing outside can connect before init is done),
	# on PGPORT so its socket name matches what psql below uses; user's -c options apply.
	export PGPASSWORD="$POSTGRES_PASSWORD"
	shift
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" \
		-o "$(printf '%q ' "$@" -c listen_addresses= -p "${PGPORT:-5432}")" -w start
	set -- postgres "$@"

	psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password)
	exists=$("${psql[@]}" --dbname postgres --tuples-only --no-align --set db="$POSTGRES_DB" \
		<<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
	if [ -z "$exists" ]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	echo
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)
				echo "$0: running $f"
				# shellcheck disable=SC1090
				if [ -x "$f" ]; then "$f"; else . "$f"; fi
				;;
			*.sql) echo "$0: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
			*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
			*) echo "$0: ignoring $f" ;;
		esac
	done
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD
	echo
	echo 'PostgreSQL init process complete; ready for start up.'
	echo
else
	echo
	echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
	echo
fi

exec "$@"
