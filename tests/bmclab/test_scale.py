"""A 250-BMC fleet starts and answers concurrently. Timings are printed, never asserted."""

from __future__ import annotations

import asyncio
import time

from bmclab_helpers import AUTH, client

from bmclab import Lab, LabConfig
from tests.lab_net import LAB_NET


async def test_250_bmcs_start_and_answer_concurrently() -> None:
    config = LabConfig(count=250, network=f"{LAB_NET}.206.0/24", latency="0", seed=1)
    started = time.perf_counter()
    async with Lab(config) as lab:
        start_time = time.perf_counter() - started
        assert len(lab.manifest) == 250
        assert len({e.serial for e in lab.manifest}) == 250
        assert lab.manifest[-1].address == f"{LAB_NET}.206.250"

        async with client(lab, headers=AUTH) as http:

            async def probe(url: str) -> int:
                async with http.get(url + "/redfish/v1/Systems") as resp:
                    await resp.read()
                    return resp.status

            t0 = time.perf_counter()
            statuses = await asyncio.gather(*(probe(e.url) for e in lab.manifest))
            answer_time = time.perf_counter() - t0
        assert statuses == [200] * 250
        assert sum(b.requests_served for b in lab.bmcs) == 250
    print(f"\n250 BMCs: started in {start_time:.2f}s, answered in {answer_time:.2f}s")
