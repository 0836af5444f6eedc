#!/usr/bin/env bash
# Power and boot control with jobs: register a lab's BMCs, set a one-time PXE boot on a server,
# power-cycle it, and watch the job to `completed` while the server's power_state follows.
#
# Settings (RACKSMITH, ADMIN_PASSWORD, BMC_PASSWORD, IP_FROM/IP_TO, BMC_PORT) and the BMC
# registration: scripts/walkthrough-lib.sh, sourced from beside this script.
#
# With `racksmith up --lab 10` running, the banner prints the values to use; the test suite runs
# this script exactly so (tests/test_jobs_walkthrough.py). Needs curl and jq.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/walkthrough-lib.sh"

# 1. Find and register the BMCs (the guide's walkthrough, in short).
register_lab

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
