#!/usr/bin/env bash
# The MOJO API Automation Guide's "API Training: End-to-End Walkthrough", run against Racksmith.
#
# The commands below are the guide's, unchanged except for what the guide itself says to change:
# the host, the BMC network and port, and the passwords. Set those here or in the environment:
#
#   MOJOHOST        Racksmith's URL                     (guide: https://your-mojo-instance)
#   ADMIN_PASSWORD  the admin password                  (guide: your_password)
#   BMC_PASSWORD    the BMCs' root password             (guide: bmc_password)
#   IP_FROM/IP_TO   the BMC network                     (guide: 10.50.5.1 – 10.50.5.254)
#   BMC_PORT        the BMCs' HTTPS port                (guide: 443)
#
# With `racksmith up --lab 10` running, the banner prints the values to use; the test suite runs
# this script exactly so (tests/test_walkthrough.py). Needs curl and jq.
set -euo pipefail

MOJOHOST="${MOJOHOST:-https://your-mojo-instance}"
ADMIN_PASSWORD="${ADMIN_PASSWORD:-your_password}"
BMC_PASSWORD="${BMC_PASSWORD:-bmc_password}"
IP_FROM="${IP_FROM:-10.50.5.1}"
IP_TO="${IP_TO:-10.50.5.254}"
BMC_PORT="${BMC_PORT:-443}"

# 1. Authenticate
export MOJOHOST
export TOKEN=$(curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -d "{\"username\": \"admin\", \"password\": \"${ADMIN_PASSWORD}\"}" \
  ${MOJOHOST}/api/token/ | jq -r '.access')

# Verify authentication
curl -s -k -H "Authorization: Bearer ${TOKEN}" \
  ${MOJOHOST}/api/users/me/ | jq '.username'

# 2. Create an Authentication Profile for BMC Access
PROFILE_ID=$(curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${TOKEN}" \
  -d '{"node_classification": "Dell DC Rack 5", "bmc": "redfish"}' \
  ${MOJOHOST}/api/node_discovery/auth_profile/ | jq -r '.id')

echo "Created auth profile: ${PROFILE_ID}"

# Add BMC credentials
curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${TOKEN}" \
  -d "{\"username\": \"root\", \"password\": \"${BMC_PASSWORD}\"}" \
  ${MOJOHOST}/api/node_discovery/auth_profile/${PROFILE_ID}/credentials/

# 3. Create a Scan Range and Discover
SCAN_ID=$(curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${TOKEN}" \
  -d "{
    \"name\": \"DC Rack 5\",
    \"ip_from\": \"${IP_FROM}\",
    \"ip_to\": \"${IP_TO}\",
    \"ports\": [${BMC_PORT}]
  }" \
  ${MOJOHOST}/api/node_discovery/scan_range/ | jq -r '.id')

echo "Created scan range: ${SCAN_ID}"

# Start discovery
curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${TOKEN}" \
  -d "{\"scan_ranges\": [${SCAN_ID}]}" \
  ${MOJOHOST}/api/node_discovery/run_scan/

# 4. Wait for Discovery to Complete
while true; do
  STATUS=$(curl -s -k \
    -H "Authorization: Bearer ${TOKEN}" \
    ${MOJOHOST}/api/node_discovery/scan_range/${SCAN_ID}/ | jq -r '.status')
  echo "Scan status: ${STATUS}"
  if [ "${STATUS}" != "scanning" ]; then
    break
  fi
  sleep 10
done

# 5. Register Discovered Nodes
NODES=$(curl -s -k \
  -H "Authorization: Bearer ${TOKEN}" \
  "${MOJOHOST}/api/node/?status=discovered" | jq -r '.results[] | .id')

echo "Found nodes: ${NODES}"

# Register each node with our auth profile
for NODE_ID in ${NODES}; do
  echo "Registering node ${NODE_ID}..."
  curl -s -k -X POST \
    -H "Content-Type: application/json" \
    -H "Authorization: Bearer ${TOKEN}" \
    -d "{\"auth_profile\": ${PROFILE_ID}}" \
    ${MOJOHOST}/api/node/${NODE_ID}/register/
done

# 6. Create a Pool and Assign Servers
POOL_ID=$(curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${TOKEN}" \
  -d '{
    "name": "Production - Rack 5",
    "description": "Dell PowerEdge servers in DC Rack 5",
    "group": 1
  }' \
  ${MOJOHOST}/api/pool/ | jq -r '.id')

echo "Created pool: ${POOL_ID}"

# Get list of newly registered server IDs
SERVER_IDS=$(curl -s -k \
  -H "Authorization: Bearer ${TOKEN}" \
  "${MOJOHOST}/api/server/?search=PowerEdge&ordering=-id&page_size=10" \
  | jq '[.results[].id]')

echo "Assigning servers: ${SERVER_IDS}"

# Assign all servers to the pool in one call
curl -s -k -X POST \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${TOKEN}" \
  -d "{\"servers\": ${SERVER_IDS}}" \
  ${MOJOHOST}/api/pool/${POOL_ID}/assign_servers/

# 7. Verify the Result
# Check the pool now has our servers
curl -s -k \
  -H "Authorization: Bearer ${TOKEN}" \
  ${MOJOHOST}/api/pool/${POOL_ID}/ | jq '{name, servers_count, description}'

# List servers in the pool with their details
curl -s -k \
  -H "Authorization: Bearer ${TOKEN}" \
  "${MOJOHOST}/api/server/?resource_pool=${POOL_ID}" \
  | jq '.results[] | {id, name, model, manufacturer, power_state}'
