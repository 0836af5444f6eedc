"""`read_inventory` against every synthetic flavour and every recorded mockup, plus its
concurrency (rounds, not GETs), broken links, a BMC turning busy and duplicate MACs.

Expected values come from walking the tree the lab serves (`inventory_helpers`), never from
constants, so a new mockup or flavour change is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from inventory_helpers import (
    RecordingLatency,
    RecordingSemaphore,
    RequestRounds,
    actual_inventory,
    expected_inventory,
    expected_mac,
    mockup_dirs,
)
from redfish_helpers import expect, lab_config, open_session

from bmclab import Lab
from shared.redfish import (
    BmcBusy,
    ClientLimits,
    Inventory,
    RedfishPool,
    RedfishSession,
    read_inventory,
    read_systems,
)
from tests.lab_net import LAB_NET

MOCKUPS = mockup_dirs()
FLAVOURS = ("dell", "hpe", "supermicro", "openbmc")
# Two of each flavour: supermicro serves SimpleStorage on one and inline StorageControllers on
# the other (checked below, so a change of the lab's seed cannot silently drop a shape).
SYNTHETIC = 2 * len(FLAVOURS)
# The deepest chain read_inventory follows is 4 GETs: Storage collection -> Storage ->
# Controllers (or Volumes) collection -> member. Two rounds of slack: client and lab share one
# event loop, so answers of one level can trail by a few tens of ms and push a late request
# into the next round. A client that fetched one GET (or one branch) after another would need
# 13 or more rounds on this tree.
DEPTH_BOUND = 4 + 2


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = lab_config(
        f"{LAB_NET}.174.0/24", count=SYNTHETIC, flavours=FLAVOURS, mockups=tuple(MOCKUPS)
    )
    async with Lab(config) as running:
        yield running


async def inventory_of(session: RedfishSession) -> Inventory:
    systems = await read_systems(session)
    assert len(systems) == 1
    return await read_inventory(session, systems[0])


async def test_every_flavour_and_mockup(lab: Lab) -> None:
    pool = RedfishPool()
    shapes: set[tuple[str, bool]] = set()
    for entry in lab.manifest:
        bmc = lab.bmc(entry.index)
        async with open_session(pool, entry.url) as session:
            inventory = await inventory_of(session)
        label = entry.flavour
        expected = expected_inventory(bmc.store, inventory.system.odata_id)
        assert actual_inventory(inventory) == expected, label
        for storage in inventory.storage:
            inline = "StorageControllers" in storage.raw
            shapes.add((storage.source, inline and storage.source == "Storage"))
        # Spot checks of normalisation on what the BMC really served.
        for nic in inventory.ethernet_interfaces:
            served = bmc.store.body(nic.odata_id).get("MACAddress")
            if nic.mac_address is not None and isinstance(served, str):
                assert nic.mac_address == expected_mac(served), label
                assert nic.mac_address == nic.mac_address.lower(), label
        assert (bmc.open_sessions, bmc.max_sessions) == (0, 1), label
    assert ("SimpleStorage", False) in shapes
    assert ("Storage", True) in shapes  # inline StorageControllers
    assert ("Storage", False) in shapes  # Controllers collection


async def test_synthetic_values_are_normalised(lab: Lab) -> None:
    """Supermicro pads strings and upper-cases MACs; the inventory must not show either."""
    pool = RedfishPool()
    entry = next(e for e in lab.manifest if e.flavour == "supermicro")
    async with open_session(pool, entry.url) as session:
        inventory = await inventory_of(session)
    served_models = [
        lab.bmc(entry.index).store.body(p.odata_id)["Model"] for p in inventory.processors
    ]
    assert any(m != m.strip() for m in served_models)  # the quirk is really served
    assert [p.model for p in inventory.processors] == [m.strip() for m in served_models]
    for nic in inventory.ethernet_interfaces:
        assert nic.mac_address is None or nic.mac_address == nic.mac_address.lower()
    assert all(isinstance(m.capacity_mib, int) for m in inventory.memory)


# -- concurrency -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def slow_lab() -> AsyncIterator[Lab]:
    config = lab_config(f"{LAB_NET}.175.0/24", count=1, flavours=("dell",), latency="100")
    async with Lab(config) as running:
        yield running


def walk_only(session: RedfishSession) -> RedfishSession:
    """The session forgets that its BMC advertises ``$expand``: it walks every member."""
    session.root = {k: v for k, v in session.root.items() if k != "ProtocolFeaturesSupported"}
    return session


async def test_inventory_costs_rounds_not_gets(slow_lab: Lab) -> None:
    """With 100 ms per GET, the GETs of a walk go out level by level: the number of sequential
    rounds (counted by the order in which the BMC starts and answers requests, not by a clock)
    stays within the tree depth, whatever the number of GETs."""
    bmc = slow_lab.bmc(0)
    pool = RedfishPool(ClientLimits(per_bmc=64))
    async with open_session(pool, slow_lab.manifest[0].url) as session:
        walk_only(session)
        system = (await read_systems(session))[0]
        rounds = RequestRounds()
        bmc.behaviour = dataclasses.replace(
            bmc.behaviour, latency=RecordingLatency(0.1, 0.1, 0.1, recorder=rounds)
        )
        bmc.inflight = slots = RecordingSemaphore(64, rounds)
        inventory = await read_inventory(session, system)
    gets = len(rounds.rounds)
    assert len(inventory.memory) >= 4 and inventory.storage  # a tree worth walking
    assert 4 <= rounds.depth <= DEPTH_BOUND, rounds.rounds
    assert gets >= 6 * rounds.depth, rounds.rounds  # far from one GET per round
    # Order-free evidence too: a whole level (all firmware members, DIMMs...) was in flight.
    assert slots.peak >= 10


async def test_per_bmc_cap_bounds_inventory(slow_lab: Lab) -> None:
    bmc = slow_lab.bmc(0)
    pool = RedfishPool(ClientLimits(per_bmc=3))
    async with open_session(pool, slow_lab.manifest[0].url) as session:
        system = (await read_systems(session))[0]
        bmc.inflight = slots = RecordingSemaphore(64)
        await read_inventory(session, system)
    assert slots.peak == 3


async def test_expand_reads_the_same_inventory_with_fewer_requests(lab: Lab) -> None:
    """Where the root advertises ``$expand=.`` a collection and its members are one request:
    the same inventory as the walk for fewer requests; elsewhere nothing changes."""
    pool = RedfishPool()
    advertised = set()
    for entry in lab.manifest[:SYNTHETIC]:
        bmc = lab.bmc(entry.index)
        requests = []
        inventories = []
        expands = False
        for walk in (False, True):
            async with open_session(pool, entry.url) as session:
                if walk:
                    walk_only(session)
                else:
                    expands = session.expands_subordinates
                systems = await read_systems(session)
                before = bmc.requests_served
                inventories.append(await read_inventory(session, systems[0]))
                requests.append(bmc.requests_served - before)
        assert actual_inventory(inventories[0]) == actual_inventory(inventories[1]), entry.flavour
        if expands:
            advertised.add(entry.flavour)
            # Memory, processors, NICs, storage and firmware collections each saved GETs.
            assert requests[0] < requests[1] - 10, (entry.flavour, requests)
        else:
            assert requests[0] == requests[1], (entry.flavour, requests)
    assert advertised == {"dell", "hpe", "openbmc"}


# -- broken links, busy BMC, duplicate MACs ----------------------------------------------------


@pytest.fixture
async def dell_lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    config = lab_config(f"{LAB_NET}.176.0/24", count=1, flavours=("dell",))
    async with Lab(config) as running:
        yield running


def _system_path(lab: Lab) -> str:
    return f"/redfish/v1/Systems/{lab.manifest[0].system_ids[0]}"


def _append_member(lab: Lab, collection: str, key: str, path: str) -> None:
    resource = lab.bmc(0).store.get(collection)
    assert resource is not None
    resource.body[key].append({"@odata.id": path})
    resource.changed()


async def test_missing_members_are_skipped(dell_lab: Lab) -> None:
    store = dell_lab.bmc(0).store
    system = store.body(_system_path(dell_lab))
    memory = system["Memory"]["@odata.id"]
    storage = store.body(store.body(system["Storage"]["@odata.id"])["Members"][0]["@odata.id"])
    served_dimms = len(store.body(memory)["Members"])
    served_drives = len(storage["Drives"])
    _append_member(dell_lab, memory, "Members", f"{memory}/Ghost")
    _append_member(dell_lab, storage["@odata.id"], "Drives", f"{storage['@odata.id']}/Gone")
    async with open_session(RedfishPool(), dell_lab.manifest[0].url) as session:
        inventory = await inventory_of(session)
    assert len(inventory.memory) == served_dimms
    assert len(inventory.storage[0].drives) == served_drives
    assert all(not m.odata_id.endswith("Ghost") for m in inventory.memory)
    assert actual_inventory(inventory) == expected_inventory(store, _system_path(dell_lab))


async def test_busy_bmc_mid_inventory_raises(dell_lab: Lab) -> None:
    bmc = dell_lab.bmc(0)
    async with open_session(RedfishPool(), dell_lab.manifest[0].url) as session:
        system = (await read_systems(session))[0]
        # The 6th request of the inventory finds the BMC busy (the first ones succeeded).
        bmc.inflight = slots = RecordingSemaphore(4, on_request=(6, lambda: bmc.set_fault("busy")))
        await expect(BmcBusy, lambda: read_inventory(session, system), match="busy")
        assert slots.acquired >= 6
        bmc.clear_fault()
    assert bmc.open_sessions == 0


async def test_duplicate_mac_is_kept_and_flagged(dell_lab: Lab) -> None:
    store = dell_lab.bmc(0).store
    nics = store.body(store.body(_system_path(dell_lab))["EthernetInterfaces"]["@odata.id"])
    first, second = (m["@odata.id"] for m in nics["Members"][:2])
    mac = expected_mac(store.body(first)["MACAddress"])
    assert mac is not None
    resource = store.get(second)
    assert resource is not None
    resource.body["MACAddress"] = mac.replace(":", "-").upper()  # another spelling of it
    resource.changed()
    async with open_session(RedfishPool(), dell_lab.manifest[0].url) as session:
        inventory = await inventory_of(session)
    assert inventory.duplicate_macs == frozenset({mac})
    assert [n.mac_address for n in inventory.ethernet_interfaces].count(mac) == 2
    assert len(inventory.ethernet_interfaces) == len(nics["Members"])


DL360 = "hpe-ilo5-proliant-dl360-gen10plus"


@pytest.fixture
async def hpe_lab() -> AsyncIterator[Lab]:
    """The recorded iLO 5 DL360 Gen10 Plus alone (its tree is edited per test)."""
    mockup = [m for m in MOCKUPS if m.name == DL360]
    assert mockup, "the shared mockups are part of this test"
    async with Lab(lab_config(f"{LAB_NET}.177.0/24", count=0, mockups=tuple(mockup))) as lab:
        yield lab


async def _hpe_inventory(lab: Lab) -> Inventory:
    async with open_session(RedfishPool(), lab.manifest[0].url) as session:
        inventory = await inventory_of(session)
    store = lab.bmc(0).store
    assert actual_inventory(inventory) == expected_inventory(store, inventory.system.odata_id)
    return inventory


async def test_hpe_smart_storage_when_storage_is_empty(hpe_lab: Lab) -> None:
    """Older iLO 5 firmware (the recorded XL675d) lists no Storage; the disks are only in the
    OEM SmartStorage tree, which is then read: controller, physical and logical drives."""
    store = hpe_lab.bmc(0).store
    collection = store.snapshot("/redfish/v1/Systems/1/Storage")
    store.put("/redfish/v1/Systems/1/Storage", {**collection, "Members": []})
    (array,) = (await _hpe_inventory(hpe_lab)).storage
    assert array.source == "SmartStorage"
    (controller,) = array.controllers
    assert (controller.model, controller.firmware_version) == (
        "HPE SR416i-a Gen10+",
        "03.01.33.044",
    )
    assert sorted(d.serial_number or "" for d in array.drives) == [
        "S521NA0T605338",
        "S521NA0T605357",
    ]
    assert {(d.protocol, d.media_type) for d in array.drives} == {("SATA", "SSD")}
    (volume,) = array.volumes
    assert (volume.name, volume.raid_type, volume.capacity_bytes) == (
        "BootVolume",
        "RAID1",
        457830 * 1024 * 1024,
    )


async def test_chassis_drives_no_storage_lists_are_read(hpe_lab: Lab) -> None:
    store = hpe_lab.bmc(0).store
    path = "/redfish/v1/Systems/1/Storage/DE00A000"
    storage = store.snapshot(path)
    kept, dropped = storage["Drives"]
    store.put(path, {**storage, "Drives": [kept]})
    inventory = await _hpe_inventory(hpe_lab)
    assert [s.source for s in inventory.storage] == ["Storage", "Chassis"]
    bays = inventory.storage[1]
    # Only the drive no storage lists; the bays' six empty slots (State Absent) are left out.
    assert [d.odata_id for d in bays.drives] == [dropped["@odata.id"]]
    assert bays.drives[0].capacity_bytes == 480103981056


async def test_a_volume_two_storages_list_is_listed_once(dell_lab: Lab) -> None:
    store = dell_lab.bmc(0).store
    system = store.body(_system_path(dell_lab))
    members = store.body(system["Storage"]["@odata.id"])["Members"]
    first = store.snapshot(members[0]["@odata.id"])
    assert store.body(first["Volumes"]["@odata.id"])["Members"], "the flavour serves volumes"
    twin = {**first, "@odata.id": f"{first['@odata.id']}-Twin", "Id": "Twin", "Drives": []}
    store.put(twin["@odata.id"], twin)
    _append_member(dell_lab, system["Storage"]["@odata.id"], "Members", twin["@odata.id"])
    async with open_session(RedfishPool(), dell_lab.manifest[0].url) as session:
        inventory = await inventory_of(session)
    volumes = [v.odata_id for s in inventory.storage for v in s.volumes]
    assert volumes and len(volumes) == len(set(volumes))
    assert inventory.storage[-1].odata_id.endswith("-Twin")
    assert inventory.storage[-1].volumes == ()
    assert actual_inventory(inventory) == expected_inventory(store, _system_path(dell_lab))
