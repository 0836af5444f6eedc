#!/usr/bin/env bash
# What the docs' curl sessions (scripts/deploy-walkthrough.sh, scripts/jobs-walkthrough.sh) share:
# the settings, a token, and `register_lab`, which finds and registers the lab's BMCs. Sourced by
# those scripts; not run on its own.
#
#   RACKSMITH       Racksmith's URL                     (default http://127.0.0.1:8000)
#   ADMIN_PASSWORD  the admin password
#   BMC_PASSWORD    the BMCs' root password             (the lab's: calvin)
#   IP_FROM/IP_TO   the BMC network                     (`racksmith up --lab 10`: 127.0.10.1-10)
#   BMC_PORT        the BMCs' HTTPS port                (the lab's: 8443)

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

# Find and register the BMCs (the guide's walkthrough, in short).
register_lab() {
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
}
