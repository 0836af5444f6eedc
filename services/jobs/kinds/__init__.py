"""The job kinds the engine knows, by name (a job row's ``kind``).

A new kind is a module here with a `JobKind` (its named steps and the first one) registered
below, its request shape in ``shared/models/jobs.py``, and an API route that creates its jobs
through ``shared.lifecycle.job.create`` (see docs/jobs.md, "Writing a job kind").
"""

from services.jobs.engine import JobKind
from services.jobs.kinds.boot import BOOT
from services.jobs.kinds.deployment import DEPLOYMENT
from services.jobs.kinds.power import POWER

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (POWER, BOOT, DEPLOYMENT)}
