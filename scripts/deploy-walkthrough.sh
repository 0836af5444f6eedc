#!/usr/bin/env bash
# Deploy an OS over virtual media: register a lab's BMCs, upload a small generated ISO, deploy
# it to three servers, see remove_from_pool refused while they deploy, and watch the jobs to
# `completed` while each server's deployment_status follows.
#
#   RACKSMITH       Racksmith's URL                     (default http://127.0.0.1:8000)
#   ADMIN_PASSWORD  the admin password
#   BMC_PASSWORD    the BMCs' root password             (the lab's: calvin)
#   IP_FROM/IP_TO   the BMC network                     (`racksmith up --lab 10`: 127.0.10.1-10)
#   BMC_PORT        the BMCs' HTTPS port                (the lab's: 8443)
#
# With `racksmith up --lab 10` running, the banner prints the values to use; the test suite runs
# this script exactly so (tests/test_deploy_walkthrough.py). Needs curl and jq.
set -euo pipefail

RACKSMITH="${RACKSMITH:-http://127.0.0.1:8000}"
ADMIN_PASSWORD="${ADMIN_PASSWORD:?set ADMIN_PASSWORD}"
BMC_PASSWORD="${BMC_PASSWORD:-calvin}"
IP_FROM="${IP_FROM:-127.0.10.1}"
IP_TO="${IP_TO:-127.0.10.10}"
BMC_PORT="${BMC_PORT:-8443}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

TOKEN=$(curl -s -X POST -H "Content-Type: application/json" \
  -d "{\"username\": \"admin\", \"password\": \"${ADMIN_PASSWORD}\"}" \
  "${RACKSMITH}/api/token/" | jq -r '.access')
AUTH="Authorization: Bearer ${TOKEN}"
JSON="Content-Type: application/json"

# 1. Find and register the BMCs (the guide's walkthrough, in short).
PROFILE_ID=$(curl -s -X POST -H "$AUTH" -H "$JSON" \
  -d '{"node_classification": "BMC lab", "bmc": "redfish"}' \
  "${RACKSMITH}/api/node_discovery/auth_profile/" | jq -r '.id')
curl -s -X POST -H "$AUTH" -H "$JSON" \
  -d "{\"username\": \"root\", \"password\": \"${BMC_PASSWORD}\"}" \
  "${RACKSMITH}/api/node_discovery/auth_profile/${PROFILE_ID}/credentials/" > /dev/null
SCAN_ID=$(curl -s -X POST -H "$AUTH" -H "$JSON" \
  -d "{\"name\": \"lab\", \"ip_from\": \"${IP_FROM}\", \"ip_to\": \"${IP_TO}\", \"ports\": [${BMC_PORT}]}" \
  "${RACKSMITH}/api/node_discovery/scan_range/" | jq -r '.id')
curl -s -X POST -H "$AUTH" -H "$JSON" -d "{\"scan_ranges\": [${SCAN_ID}]}" \
  "${RACKSMITH}/api/node_discovery/run_scan/" > /dev/null
until [ "$(curl -s -H "$AUTH" "${RACKSMITH}/api/node_discovery/scan_range/${SCAN_ID}/" \
  | jq -r '.status')" != "scanning" ]; do sleep 1; done
NODES=$(curl -s -H "$AUTH" "${RACKSMITH}/api/node/?scan_range=${SCAN_ID}" | jq -c '[.results[].id]')
curl -s -X POST -H "$AUTH" -H "$JSON" -d "{\"nodes\": ${NODES}, \"auth_profile\": ${PROFILE_ID}}" \
  "${RACKSMITH}/api/node/register/?wait=60" | jq -c '[.results[] | {id, status}]'

# 2. A small generated "installer ISO" (4 MiB, an ISO 9660 volume descriptor at 32 KiB), uploaded.
head -c 4194304 /dev/zero > "$WORK/tiny-installer.iso"
printf '\001CD001\001' | dd of="$WORK/tiny-installer.iso" bs=1 seek=32768 conv=notrunc 2> /dev/null
OS_ID=$(curl -s -X POST -H "$AUTH" -F file=@"$WORK/tiny-installer.iso" \
  -F name="Tiny Linux" -F version=1.0 -F arch=x86_64 -F os_family=linux \
  "${RACKSMITH}/api/os/" | jq -r '.id')
curl -s -H "$AUTH" "${RACKSMITH}/api/os/?arch=x86_64" | jq -c '.results[] | {id, name, status, size}'

# 3. Deploy it to the first three servers: one deployment job each.
SERVERS=$(curl -s -H "$AUTH" "${RACKSMITH}/api/server/?ordering=id&page_size=3" \
  | jq -c '[.results[].id]')
JOBS=$(curl -s -X POST -H "$AUTH" -H "$JSON" \
  -d "{\"servers\": ${SERVERS}, \"os\": ${OS_ID}, \"method\": \"virtual_media\",
       \"config\": {\"ssh_authorized_keys\": [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ops@example\"]}}" \
  "${RACKSMITH}/api/deployment/" | jq -c '[.jobs[].id]')
echo "Deployment jobs: ${JOBS}"

# 4. While they deploy, the servers are locked: remove_from_pool answers 409 naming the jobs.
echo "remove_from_pool: $(curl -s -o "$WORK/refused.json" -w '%{http_code}' -X POST -H "$AUTH" \
  -H "$JSON" -d "{\"servers\": ${SERVERS}}" "${RACKSMITH}/api/server/remove_from_pool/") \
$(jq -c '{detail, conflicts}' "$WORK/refused.json")"

# 5. Watch the jobs and the servers' deployment_status until every job ended.
while :; do
  STATES=$(curl -s -H "$AUTH" "${RACKSMITH}/api/job/?kind=deployment&id__in=$(echo "$JOBS" \
    | jq -r 'join(",")')" | jq -c '[.results[] | {id, state, step}] | sort_by(.id)')
  echo "jobs: ${STATES}"
  if echo "$STATES" | jq -e 'all(.state == "completed" or .state == "failed"
      or .state == "cancelled")' > /dev/null; then break; fi
  sleep 2
done
for JOB_ID in $(echo "$JOBS" | jq -r '.[]'); do
  curl -s -H "$AUTH" "${RACKSMITH}/api/job/${JOB_ID}/" \
    | jq -c '{id, server, state, error_code, messages: [.messages[].text]}'
done
curl -s -H "$AUTH" "${RACKSMITH}/api/server/?deployment_status=deployed&os=${OS_ID}&ordering=id" \
  | jq -c '.results[] | {id, name, os, deployment_status, locked_by}'
