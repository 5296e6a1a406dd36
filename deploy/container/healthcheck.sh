#!/bin/bash
# Container HEALTHCHECK: GET /health on the HTTP port over loopback, with bash's
# /dev/tcp (the image has no curl). Exit 0 on "HTTP/1.1 200", else 1.
# Port: RWKVX_FLAG_HTTP_PORT (the image sets 8080). Needs the server to listen on
# loopback too (RWKVX_FLAG_HOST=0.0.0.0, the image default, does).
set -uo pipefail
port=${RWKVX_FLAG_HTTP_PORT:-8080}
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 4 status <&3 || exit 1
case $status in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) echo "healthcheck: ${status}" >&2; exit 1 ;;
esac
