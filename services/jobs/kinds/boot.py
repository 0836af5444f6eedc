"""Boot jobs: set a system's boot override and confirm it by reading it back.

Steps: ``inspect`` (read ``Boot``: what is set, what may be set; decide the values) → ``patch``
(read again for a fresh ETag, record the intent, PATCH with ``If-Match``) → ``verify`` (read
back until every field reads as sent).

Target, enabled and mode are always sent together: some BMCs refuse a partial override, and
some put the mode back to their default when it is left out. Without a requested mode, the mode
the system is set to now is sent. ``continuous`` becomes ``once`` where the BMC does not allow
it (not advertised, or refused with 400 where it advertises nothing), and the job says so.
A PATCH is idempotent, so a lost answer is settled by reading back, and sent again if needed.
"""

from __future__ import annotations

from services.jobs.engine import JobKind, StepContext
from shared.lifecycle.job import Done, Fail, Next, Outcome, Poll, Retry
from shared.models.jobs import (
    BMC_REFUSED,
    BMC_UNREACHABLE,
    BootEnabled,
    BootMode,
    BootRequest,
    BootTarget,
)
from shared.redfish import RequestRefused, ResponseLost
from shared.redfish.control import BootOverride

TARGETS = {
    BootTarget.pxe: "Pxe",
    BootTarget.cd: "Cd",
    BootTarget.hdd: "Hdd",
    BootTarget.uefi_http: "UefiHttp",
    BootTarget.bios_setup: "BiosSetup",
    BootTarget.none: "None",
}
MODES = {BootMode.uefi: "UEFI", BootMode.legacy: "Legacy"}
ENABLED = "BootSourceOverrideEnabled"
# Refusals worth another attempt within the step: a stale ETag, If-Match demanded, Continuous
# refused by a BMC that does not advertise what it allows.
PATCH_ATTEMPTS = 3


def _params(ctx: StepContext) -> BootRequest:
    return BootRequest.model_validate(ctx.job.params)


def _shown(wanted: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in wanted.items())


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def wanted_values(request: BootRequest, boot: BootOverride) -> tuple[dict[str, str], list[str]]:
    """The Boot properties to PATCH and notes on what was adapted; raises `Refused`."""
    notes: list[str] = []
    target = TARGETS[request.target]
    if boot.allowed_targets is not None and target not in boot.allowed_targets:
        raise Refused(
            "unsupported_boot_target",
            f"The BMC does not offer boot target {target} "
            f"(it allows {', '.join(boot.allowed_targets)}).",
        )
    if request.target is BootTarget.uefi_http and not boot.has_http_boot_uri:
        raise Refused(
            "unsupported_boot_target",
            "The system has no HttpBootUri, so a UEFI HTTP boot URI cannot be set.",
        )
    if request.target is BootTarget.none:
        enabled = "Disabled"
    elif request.enabled is BootEnabled.continuous:
        enabled = "Continuous"
        if boot.allowed_enabled is not None and enabled not in boot.allowed_enabled:
            enabled = "Once"
            notes.append("The BMC does not allow a continuous override; set Once instead.")
    else:
        enabled = "Once"
    wanted = {"BootSourceOverrideTarget": target, ENABLED: enabled}
    if request.mode is not None:
        mode = MODES[request.mode]
        if not boot.has_mode:
            raise Refused("unsupported_boot_mode", "The system has no BootSourceOverrideMode.")
        if boot.allowed_modes is not None and mode not in boot.allowed_modes:
            raise Refused(
                "unsupported_boot_mode",
                f"The BMC does not offer boot mode {mode} "
                f"(it allows {', '.join(boot.allowed_modes)}).",
            )
        wanted["BootSourceOverrideMode"] = mode
    elif boot.has_mode and boot.mode is not None:
        wanted["BootSourceOverrideMode"] = boot.mode
    if request.http_boot_uri is not None:
        wanted["HttpBootUri"] = request.http_boot_uri
    return wanted, notes


async def _read(ctx: StepContext) -> tuple[BootOverride | None, str | None]:
    system, etag = await (await ctx.bmc()).get_with_etag(ctx.access.system_path)
    return BootOverride.parse(system), etag


async def inspect(ctx: StepContext) -> Outcome:
    boot, _ = await _read(ctx)
    if boot is None:
        return Fail(
            "unsupported_boot_target",
            "The system has no boot override (Boot.BootSourceOverrideTarget).",
        )
    try:
        wanted, notes = wanted_values(_params(ctx), boot)
    except Refused as exc:
        return Fail(exc.code, exc.reason)
    for note in notes:
        ctx.note(note)
    ctx.data["wanted"] = wanted
    if not boot.differs(wanted):
        return Done(f"The boot override already reads {_shown(wanted)}.")
    return Next("patch")


async def patch(ctx: StepContext) -> Outcome:
    wanted: dict[str, str] = ctx.data["wanted"]
    boot, etag = await _read(ctx)
    if boot is None:
        return Fail("unsupported_boot_target", "The system's boot override disappeared.")
    if not boot.differs(wanted):
        # An earlier delivery's PATCH landed before its answer was recorded.
        return Done(f"Boot override reads {_shown(wanted)}.")
    if ctx.unsettled_intent is not None:
        ctx.note(
            "An earlier PATCH's answer was not recorded and it did not take; sending it again."
        )
    if_match = etag or ("*" if ctx.data.get("if_match_any") else None)
    body = {"Boot": wanted}
    await ctx.intend({"method": "PATCH", "path": ctx.access.system_path, "body": body})
    try:
        result = await (await ctx.bmc()).patch(ctx.access.system_path, body, etag=if_match)
    except ResponseLost as exc:
        ctx.note(f"{exc}; reading the boot settings back.", code=BMC_UNREACHABLE)
        ctx.data["uncertain"] = True
        return _to_verify(ctx)
    except RequestRefused as exc:
        ctx.refused(exc.status, exc.message_id)
        return _refused(ctx, exc, boot, if_match)
    ctx.started(result)
    ctx.note(f"BMC accepted {_shown(wanted)} ({result.status}).")
    return _to_verify(ctx)


def _refused(
    ctx: StepContext, exc: RequestRefused, boot: BootOverride, if_match: str | None
) -> Outcome:
    wanted: dict[str, str] = ctx.data["wanted"]
    if exc.status == 412:
        return Retry(
            BMC_REFUSED,
            "The settings changed since they were read (412); again.",
            0.0,
            PATCH_ATTEMPTS,
        )
    if exc.status == 428 and if_match is None:
        ctx.data["if_match_any"] = True
        return Retry(BMC_REFUSED, "The BMC demands If-Match (428); again.", 0.0, PATCH_ATTEMPTS)
    if exc.status == 400 and wanted[ENABLED] == "Continuous" and boot.allowed_enabled is None:
        wanted[ENABLED] = "Once"
        return Retry(
            BMC_REFUSED,
            f"The BMC refused a continuous override ({exc.message_id}); set Once instead.",
            0.0,
            PATCH_ATTEMPTS,
        )
    return Fail(BMC_REFUSED, f"BMC refused the boot override {_shown(wanted)}: {exc}")


def _to_verify(ctx: StepContext) -> Next:
    return Next(
        "verify",
        waiting_for="the boot override to read back as sent",
        deadline_s=ctx.settings.job_power_timeout_s,
        expiry_code="boot_override_not_applied",
    )


async def verify(ctx: StepContext) -> Outcome:
    wanted: dict[str, str] = ctx.data["wanted"]
    boot, _ = await _read(ctx)
    differing = boot.differs(wanted) if boot is not None else list(wanted)
    if not differing:
        return Done(f"Boot override reads {_shown(wanted)}.")
    if ctx.step_expired:
        if ctx.data.get("uncertain") and not ctx.data.get("repatched"):
            ctx.data["repatched"] = True
            ctx.note("The lost PATCH did not take; sending it again.")
            return Next("patch")
        return Fail(
            "boot_override_not_applied",
            f"The BMC accepted the boot override but {', '.join(differing)} read otherwise.",
        )
    return Poll(ctx.settings.job_poll_interval_s)


BOOT = JobKind(
    name="boot",
    first_step="inspect",
    steps={"inspect": inspect, "patch": patch, "verify": verify},
)
