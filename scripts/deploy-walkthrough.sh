#!/usr/bin/env bash
# Deploy an OS over virtual media: register a lab's BMCs, upload a small generated ISO, deploy
# it to three servers, see remove_from_pool refused while they deploy, and watch the jobs to
# `completed` while each server's deployment_status follows.
#
# Settings (RACKSMITH, ADMIN_PASSWORD, BMC_PASSWORD, IP_FROM/IP_TO, BMC_PORT) and the BMC
# registration: scripts/walkthrough-lib.sh, sourced from beside this script.
#
# With `racksmith up --lab 10` running, the banner prints the values to use; the test suite runs
# this script exactly so (tests/test_deploy_walkthrough.py). Needs curl and jq.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/walkthrough-lib.sh"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. Find and register the BMCs (the guide's walkthrough, in short).
register_lab

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
