#!/usr/bin/env bash
# Installs (if missing) and starts etcd and PostgreSQL on loopback, on free
# ports, for the cluster and storage tests. Meant to be sourced: it exports
#   GOVERSE_TEST_ETCD          e.g. http://127.0.0.1:23791
#   GOVERSE_TEST_DATABASE_URL  e.g. postgres://goverse:goverse@127.0.0.1:54321/goverse
#   GOVERSE_TEST_DATABASE_CA   the CA that signed PostgreSQL's TLS certificate
# and registers cleanup of both on exit. Needs root (apt-get, runuser).

services_dir=$(mktemp -d -t goverse-services.XXXXXX)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

install_missing() {
  local need=()
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "services: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

start_etcd() {
  local client peer
  client=$(free_port); peer=$(free_port)
  etcd --name goverse-test --data-dir "$services_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "goverse-test=http://127.0.0.1:$peer" --initial-cluster-state new \
    >"$services_dir/etcd.log" 2>&1 &
  echo $! >"$services_dir/etcd.pid"
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$client/health" >/dev/null 2>&1; then
      export GOVERSE_TEST_ETCD="http://127.0.0.1:$client"
      echo "services: etcd on $GOVERSE_TEST_ETCD"
      return 0
    fi
    sleep 0.2
  done
  echo "services: etcd did not become healthy; log:" >&2; cat "$services_dir/etcd.log" >&2
  return 1
}

# A CA and a server certificate for 127.0.0.1, so TLS to PostgreSQL can
# be tested with full verification.
make_certificates() {
  local tls="$services_dir/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=goverse test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/san.ext" -out "$tls/server.crt" >/dev/null 2>&1
  chown postgres "$tls/server.key" "$tls/server.crt"
  chmod 600 "$tls/server.key"
  export GOVERSE_TEST_DATABASE_CA="$tls/ca.crt"
}

start_postgres() {
  local bin port data tls
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  port=$(free_port)
  data="$services_dir/pg"
  mkdir -p "$data" && echo postgres >"$services_dir/pg.pw"
  chown postgres "$services_dir" "$data" "$services_dir/pg.pw"
  make_certificates
  tls="$services_dir/tls"
  runuser -u postgres -- "$bin/initdb" -D "$data" -A scram-sha-256 -U postgres --pwfile="$services_dir/pg.pw" >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" \
    -o "-k $services_dir -c listen_addresses=127.0.0.1 -p $port -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" \
    -l "$data/log" -w start >/dev/null
  echo "$bin/pg_ctl -D $data" >"$services_dir/pg.ctl"
  PGPASSWORD=postgres psql -h 127.0.0.1 -p "$port" -U postgres -qc \
    "CREATE ROLE goverse LOGIN PASSWORD 'goverse' CREATEDB" >/dev/null
  PGPASSWORD=postgres psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE goverse OWNER goverse" >/dev/null
  export GOVERSE_TEST_DATABASE_URL="postgres://goverse:goverse@127.0.0.1:$port/goverse"
  echo "services: PostgreSQL on 127.0.0.1:$port"
}

stop_services() {
  if [ -f "$services_dir/etcd.pid" ]; then kill "$(cat "$services_dir/etcd.pid")" 2>/dev/null || true; fi
  if [ -f "$services_dir/pg.ctl" ]; then runuser -u postgres -- $(cat "$services_dir/pg.ctl") -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$services_dir"
}
trap stop_services EXIT

install_missing
start_etcd
start_postgres
