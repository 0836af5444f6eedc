#!/usr/bin/env bash
# Power and boot control with jobs: register a lab's BMCs, set a one-time PXE boot on a server,
# power-cycle it, and watch the job to `completed` while the server's power_state follows.
#
#   RACKSMITH       Racksmith's URL                     (default http://127.0.0.1:8000)
#   ADMIN_PASSWORD  the admin password
#   BMC_PASSWORD    the BMCs' root password             (the lab's: calvin)
#   IP_FROM/IP_TO   the BMC network                     (`racksmith up --lab 10`: 127.0.10.1-10)
#   BMC_PORT        the BMCs' HTTPS port                (the lab's: 8443)
#
# With `racksmith up --lab 10` running, the banner prints the values to use; the test suite runs
# this script exactly so (tests/test_jobs_walkthrough.py). Needs curl and jq.
set -euo pipefail

RACKSMITH="${RACKSMITH:-http://127.0.0.1:8000}"
ADMIN_PASSWORD="${ADMIN_PASSWORD:?set ADMIN_PASSWORD}"
BMC_PASSWORD="${BMC_PASSWORD:-calvin}"
IP_FROM="${IP_FROM:-127.0.10.1}"
IP_TO="${IP_TO:-127.0.10.10}"
BMC_PORT="${BMC_PORT:-8443}"

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

# 2. The server to work on: the first Dell PowerEdge.
SERVER_ID=$(curl -s -H "$AUTH" "${RACKSMITH}/api/server/?search=PowerEdge&ordering=id&page_size=1" \
  | jq -r '.results[0].id')
curl -s -H "$AUTH" "${RACKSMITH}/api/server/${SERVER_ID}/" \
  | jq -c '{id, node, name, model, power_state}'

# 3. Boot from the network once: a boot job, answered when it is done (?wait=).
echo "Boot job:"
curl -s -X POST -H "$AUTH" -H "$JSON" -d '{"target": "pxe", "enabled": "once"}' \
  "${RACKSMITH}/api/server/${SERVER_ID}/boot/?wait=60" \
  | jq -c '{id, kind, state, error_code, messages: [.messages[].text]}'

# 4. Power-cycle it: 202 with the job at once; watch the job and the server's power_state.
JOB_ID=$(curl -s -X POST -H "$AUTH" -H "$JSON" -d '{"action": "power_cycle"}' \
  "${RACKSMITH}/api/server/${SERVER_ID}/power/" | jq -r '.id')
echo "Power job: ${JOB_ID}"
while :; do
  JOB=$(curl -s -H "$AUTH" "${RACKSMITH}/api/job/${JOB_ID}/")
  POWER=$(curl -s -H "$AUTH" "${RACKSMITH}/api/server/${SERVER_ID}/" | jq -r '.power_state')
  echo "job ${JOB_ID}: $(echo "$JOB" | jq -r '.state + " " + (.step // "-")'), power_state ${POWER}"
  case "$(echo "$JOB" | jq -r '.state')" in completed | failed | cancelled) break ;; esac
  sleep 0.5
done
echo "$JOB" | jq -c '{state, error_code, progress, messages: [.messages[].text]}'

# 5. The server's jobs, newest first.
curl -s -H "$AUTH" "${RACKSMITH}/api/job/?server=${SERVER_ID}" \
  | jq -c '.results[] | {id, kind, state, params}'
