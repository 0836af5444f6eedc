"""The jobs worker: ``job.tick`` moves one job forward by one step (`services.jobs.engine`).

The consumer has no delivery limit: a job's one tick message comes back, delayed, for as long
as the job is active, and the engine ends the job through its deadlines and step attempts —
not by running out of deliveries. A tick that raises (the database away) is retried with
back-off like any command; the watchdog fails a job that stays stuck past its deadline.
"""

from __future__ import annotations

from services.jobs.engine import run_tick
from services.jobs.kinds import KINDS
from shared.contracts.commands import JobTickCommand
from shared.messaging.consumer import CommandContext, CommandRouter, Reschedule
from shared.messaging.streams import JOBS

router = CommandRouter(JOBS)


@router.command(JobTickCommand.subject, JobTickCommand)
async def tick(cmd: JobTickCommand, ctx: CommandContext) -> Reschedule | None:
    return await run_tick(cmd, ctx, KINDS)
