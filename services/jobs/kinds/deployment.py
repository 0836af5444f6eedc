"""Deployment jobs: install an OS image on a server through its BMC's virtual media (or UEFI
HTTP boot), then boot it from disk.

Steps: ``prepare`` (the seed, the grants, the call-home; no BMC call) → ``inspect`` (find the
VirtualMedia slots, the reset types, the boot override) → ``eject`` (whatever is mounted) →
``insert`` ⇄ ``verify_mount`` (the image into the CD slot, then the seed into another slot;
each read back, a mount that reads empty inserted again) → ``boot`` → ``verify_boot`` (one-time
boot to ``Cd``, or ``UefiHttp`` with ``HttpBootUri``) → ``cycle`` (power-cycle, or on) →
``await_install`` (the installer calls home, or powers the server off) → ``finalise`` (power
off, eject, boot from disk once, power on) → completed.

``cleanup`` is what a cancel, the job's deadline or a failure after the first insert leads to:
power off (if the server was power-cycled), eject, boot override cleared; then the job ends as it
was going to. ``finalise`` and ``cleanup`` run a list of chores from ``data["chores"]``, one
per delivery or poll, so a worker that dies in between resumes at the chore it was doing.

InsertMedia and the resets are not idempotent: each records its intent first. A delivery that
finds an insert's intent unsettled reads the slot back before inserting again; one that finds a
reset's intent unsettled reads PowerState (a restart it cannot see is taken as done: the
installer's call-home is the proof that counts).
"""

from __future__ import annotations

from typing import Any

from services.jobs.engine import JobKind, StepContext
from services.jobs.kinds.power import Move, Unsupported, plan
from shared.lifecycle import deployment
from shared.lifecycle.job import Cleanup, Done, Fail, Next, Outcome, Poll, Retry, fail_with_cleanup
from shared.models import Artifact, OSImage, Server
from shared.models.deployments import (
    IMAGE_NOT_READY,
    IMAGE_UNREACHABLE,
    INSTALLER_TIMEOUT,
    MEDIA_NOT_MOUNTED,
    UNSUPPORTED_MEDIA,
    DeploymentMethod,
    DeploymentRequest,
)
from shared.models.jobs import BMC_REFUSED, PowerAction
from shared.redfish import RequestRefused, ResponseLost
from shared.redfish.control import BootOverride, allowable_values, find_action
from shared.redfish.normalise import power_state
from shared.redfish.resources import JsonObject, value

RESET = "#ComputerSystem.Reset"
INSERT = "#VirtualMedia.InsertMedia"
EJECT = "#VirtualMedia.EjectMedia"
# Reads of a slot after an insert before it counts as a ghost mount, and inserts of one medium.
MOUNT_READS = 3
MOUNT_ATTEMPTS = 3
_CD_TYPES = frozenset({"CD", "DVD"})
# A refused insert whose MessageId says the BMC could not fetch the image.
_UNREACHABLE_IDS = ("CouldNotEstablishConnection", "ResourceAtUriUnauthorized", "UnableToMount")


def _cleanup(ctx: StepContext) -> Cleanup:
    return Cleanup("cleanup", ctx.settings.job_cleanup_timeout_s)


def _params(ctx: StepContext) -> DeploymentRequest:
    return DeploymentRequest.model_validate(ctx.job.params | {"servers": [0]})


def _fail(ctx: StepContext, code: str, reason: str) -> Outcome:
    """A failure: through the cleanup once something was changed on the server."""
    if ctx.data.get("touched") and ctx.job.step not in ("finalise", "cleanup"):
        return fail_with_cleanup(ctx.data, _cleanup(ctx), code, reason)
    return Fail(code, reason)


async def prepare(ctx: StepContext) -> Outcome:
    assert ctx.job.id is not None and ctx.job.server_id is not None
    async with ctx.runtime.db.session() as session:
        server = await session.get(Server, ctx.job.server_id)
        image = await session.get(OSImage, ctx.job.params["os"])
        artifact = await session.get(Artifact, image.artifact_id) if image else None
        if server is None or image is None or artifact is None:
            return Fail(IMAGE_NOT_READY, "The OS image was deleted.")
        if artifact.status != "ready":
            return Fail(IMAGE_NOT_READY, f"The OS image is {artifact.status}, not ready.")
        prepared = await deployment.prepare(
            session, ctx.settings, ctx.runtime.artifacts, ctx.job, server, artifact
        )
        await session.commit()
    ctx.data.update(image_url=prepared.image_url, seed_url=prepared.seed_url)
    ctx.note(f"Serving {artifact.filename} and its cloud-init seed to the BMC.")
    ctx.progress = 5
    return Next("inspect")


async def _slots(ctx: StepContext, system: JsonObject) -> list[dict[str, Any]]:
    """The VirtualMedia slots that can be inserted into, under the System or its Manager."""
    bmc = await ctx.bmc()
    collection = value(system, "VirtualMedia", "@odata.id")
    if not isinstance(collection, str):
        managers = value(system, "Links", "ManagedBy")
        for manager in managers if isinstance(managers, list) else []:
            path = manager.get("@odata.id") if isinstance(manager, dict) else None
            if isinstance(path, str):
                found = value(await bmc.get(path), "VirtualMedia", "@odata.id")
                if isinstance(found, str):
                    collection = found
                    break
    if not isinstance(collection, str):
        return []
    slots = []
    for path in await bmc.members(collection):
        body = await bmc.get(path)
        insert, eject = find_action(body, INSERT), find_action(body, EJECT)
        if insert is None or eject is None:
            continue
        types = value(body, "MediaTypes")
        cd = isinstance(types, list) and bool(_CD_TYPES & set(types))
        slots.append({"path": path, "insert": insert.target, "eject": eject.target, "cd": cd})
    return slots


async def inspect(ctx: StepContext) -> Outcome:
    bmc = await ctx.bmc()
    system = await bmc.get(ctx.access.system_path)
    ctx.power_state = power_state(value(system, "PowerState"))
    reset = find_action(system, RESET)
    boot = BootOverride.parse(system)
    if reset is None or boot is None:
        return Fail(UNSUPPORTED_MEDIA, "The system has no Reset action or no boot override.")
    ctx.data["resets"] = await allowable_values(bmc, reset, "ResetType")
    ctx.data["reset_target"] = reset.target
    method = _params(ctx).method
    target = "UefiHttp" if method is DeploymentMethod.uefi_http else "Cd"
    if boot.allowed_targets is not None and target not in boot.allowed_targets:
        return Fail("unsupported_boot_target", f"The BMC does not offer boot target {target}.")
    if method is DeploymentMethod.uefi_http and not boot.has_http_boot_uri:
        return Fail("unsupported_boot_target", "The system has no HttpBootUri.")
    wanted = {"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once"}
    if boot.has_mode and boot.mode is not None:
        wanted["BootSourceOverrideMode"] = boot.mode
    if method is DeploymentMethod.uefi_http:
        wanted["HttpBootUri"] = ctx.data["image_url"]
    ctx.data["boot"] = wanted
    slots = await _slots(ctx, system)
    ctx.data["slots"] = slots
    mounts: list[dict[str, Any]] = []
    if method is DeploymentMethod.virtual_media:
        cd = next((s for s in slots if s["cd"]), None)
        if cd is None:
            return Fail(UNSUPPORTED_MEDIA, "The BMC has no virtual media slot for a CD.")
        mounts.append({"slot": cd["path"], "url": ctx.data["image_url"], "required": True})
        other = next((s for s in slots if s is not cd), None)
        if other is not None:
            mounts.append({"slot": other["path"], "url": ctx.data["seed_url"], "required": False})
    elif slots:
        # UEFI HTTP boot: the seed alone goes in as a medium (it is beside the image too).
        mounts.append({"slot": slots[0]["path"], "url": ctx.data["seed_url"], "required": False})
    ctx.data.update(mounts=mounts, mount=0, attempts=0)
    ctx.progress = 10
    return Next("eject")


def _slot(ctx: StepContext, path: str) -> dict[str, Any]:
    slot: dict[str, Any] = next(s for s in ctx.data["slots"] if s["path"] == path)
    return slot


async def _eject_all(ctx: StepContext) -> None:
    bmc = await ctx.bmc()
    for slot in ctx.data.get("slots") or []:
        body = await bmc.get(slot["path"])
        if value(body, "Inserted") or value(body, "Image"):
            # Idempotent: ejecting an empty slot changes nothing, so no intent is needed.
            try:
                await bmc.post(slot["eject"], {})
            except RequestRefused as exc:
                ctx.note(f"Eject of {slot['path']} refused: {exc}", exc.message_id)
            else:
                ctx.note(f"Ejected {value(body, 'Image') or 'the medium'} from {slot['path']}.")


async def eject(ctx: StepContext) -> Outcome:
    await _eject_all(ctx)
    return Next("insert")


def _next_mount(ctx: StepContext) -> Outcome:
    ctx.data.update(mount=ctx.data["mount"] + 1, attempts=0)
    if ctx.data["mount"] < len(ctx.data["mounts"]):
        return Next("insert")
    ctx.progress = 20
    return Next("boot")


def _skip_mount(ctx: StepContext, why: str) -> Outcome:
    ctx.note(f"{why}; the seed stays served beside the image.")
    return _next_mount(ctx)


async def insert(ctx: StepContext) -> Outcome:
    mount = ctx.data["mounts"][ctx.data["mount"]]
    bmc = await ctx.bmc()
    body = await bmc.get(mount["slot"])
    if value(body, "Inserted") and value(body, "Image") == mount["url"]:
        if ctx.unsettled_intent is not None:
            ctx.note("The earlier insert's answer was not recorded, but the slot holds the image.")
        return _next_mount(ctx)
    if ctx.unsettled_intent is not None:
        ctx.note("The earlier insert's answer was not recorded and the slot is empty; again.")
    ctx.data["touched"] = True
    ctx.data["attempts"] += 1
    slot = _slot(ctx, mount["slot"])
    request = {"Image": mount["url"]}
    await ctx.intend({"method": "POST", "path": slot["insert"], "body": request})
    try:
        result = await bmc.post(slot["insert"], request)
    except ResponseLost as exc:
        ctx.note(f"{exc}; reading the slot back.")
        return _to_verify_mount(ctx)
    except RequestRefused as exc:
        ctx.refused(exc.status, exc.message_id)
        unreachable = any(m in (exc.message_id or "") for m in _UNREACHABLE_IDS)
        if not mount["required"]:
            return _skip_mount(ctx, f"The BMC did not take the seed as a second medium ({exc})")
        if unreachable:
            return _fail(ctx, IMAGE_UNREACHABLE, f"The BMC could not fetch the image: {exc}")
        return _fail(ctx, BMC_REFUSED, f"The BMC refused to insert the image: {exc}")
    ctx.started(result)
    ctx.note(f"BMC accepted InsertMedia into {mount['slot']} ({result.status}).")
    return _to_verify_mount(ctx)


def _to_verify_mount(ctx: StepContext) -> Next:
    ctx.data["reads"] = 0
    return Next("verify_mount", after=0.0, waiting_for="the BMC to mount the image")


async def verify_mount(ctx: StepContext) -> Outcome:
    mount = ctx.data["mounts"][ctx.data["mount"]]
    body = await (await ctx.bmc()).get(mount["slot"])
    if value(body, "Inserted") and value(body, "Image") == mount["url"]:
        return _next_mount(ctx)
    ctx.data["reads"] += 1
    if ctx.data["reads"] < MOUNT_READS:
        return Poll(ctx.settings.job_poll_interval_s)
    what = "image" if mount["required"] else "seed"
    if ctx.data["attempts"] < MOUNT_ATTEMPTS:
        ctx.note(f"The BMC accepted the {what} but the slot reads empty (a ghost mount); again.")
        return Next("insert")
    if not mount["required"]:
        return _skip_mount(ctx, f"The slot stayed empty after {MOUNT_ATTEMPTS} inserts")
    return _fail(
        ctx,
        MEDIA_NOT_MOUNTED,
        f"The BMC accepted the image {MOUNT_ATTEMPTS} times and mounted nothing.",
    )


async def _patch_boot(ctx: StepContext, wanted: dict[str, str]) -> Outcome | None:
    """PATCH the boot override (idempotent: read back, sent again if needed); an outcome when
    the BMC refused."""
    bmc = await ctx.bmc()
    system, etag = await bmc.get_with_etag(ctx.access.system_path)
    boot = BootOverride.parse(system)
    if boot is not None and not boot.differs(wanted):
        return None
    try:
        await bmc.patch(ctx.access.system_path, {"Boot": wanted}, etag=etag or "*")
    except ResponseLost as exc:
        ctx.note(f"{exc}; reading the boot override back.")
    except RequestRefused as exc:
        if exc.status in (412, 428):
            return Retry(BMC_REFUSED, f"Boot override refused ({exc.status}); again.", 0.0, 3)
        return _fail(ctx, BMC_REFUSED, f"The BMC refused the boot override: {exc}")
    return None


async def boot(ctx: StepContext) -> Outcome:
    ctx.data["touched"] = True
    refused = await _patch_boot(ctx, ctx.data["boot"])
    if refused is not None:
        return refused
    return Next(
        "verify_boot",
        waiting_for="the boot override to read back as sent",
        deadline_s=ctx.settings.job_power_timeout_s,
    )


async def verify_boot(ctx: StepContext) -> Outcome:
    system = await (await ctx.bmc()).get(ctx.access.system_path)
    boot = BootOverride.parse(system)
    differing = boot.differs(ctx.data["boot"]) if boot is not None else ["Boot"]
    if not differing:
        target = ctx.data["boot"]["BootSourceOverrideTarget"]
        ctx.note(f"One-time boot to {target} set.")
        ctx.progress = 30
        return Next("cycle")
    if ctx.step_expired:
        return _fail(
            ctx, "boot_override_not_applied", f"The boot override reads {', '.join(differing)}."
        )
    return Poll(ctx.settings.job_poll_interval_s)


def _plan(ctx: StepContext, action: PowerAction, power: str | None) -> list[Move]:
    return plan(action, ctx.data.get("resets"), power)


async def _reset(ctx: StepContext, move: Move) -> Outcome | None:
    """POST one reset (intent first); an outcome when the BMC refused it."""
    body = {"ResetType": move.reset}
    await ctx.intend({"method": "POST", "path": ctx.data["reset_target"], "body": body})
    try:
        result = await (await ctx.bmc()).post(ctx.data["reset_target"], body)
    except ResponseLost as exc:
        ctx.note(f"{exc}; reading PowerState before going on.")
        return None
    except RequestRefused as exc:
        ctx.refused(exc.status, exc.message_id)
        if exc.status == 409:
            return Retry("bmc_busy", f"ResetType={move.reset} refused (409); again.", 1.0, None)
        return _fail(ctx, BMC_REFUSED, f"The BMC refused ResetType={move.reset}: {exc}")
    ctx.started(result)
    ctx.note(f"BMC accepted ResetType={move.reset} ({result.status}).")
    return None


async def cycle(ctx: StepContext) -> Outcome:
    system = await (await ctx.bmc()).get(ctx.access.system_path)
    ctx.power_state = power_state(value(system, "PowerState"))
    if ctx.unsettled_intent is not None:
        ctx.note("The power-cycle's answer was not recorded; taking it as done (no second one).")
    else:
        try:
            moves = _plan(ctx, PowerAction.restart, ctx.power_state)
        except Unsupported as exc:
            return _fail(ctx, exc.code, exc.reason)
        ctx.data["cycled"] = True
        for move in moves[:1]:
            refused = await _reset(ctx, move)
            if refused is not None:
                return refused
            if len(moves) > 1:
                # ForceOff then On: the On comes from await_install once the power is off.
                ctx.data["then_on"] = True
    ctx.data["seen_on"] = False
    ctx.progress = 40
    timeout = _params(ctx).timeout or ctx.settings.deploy_install_timeout_s
    return Next(
        "await_install",
        after=ctx.settings.job_poll_interval_s,
        waiting_for="the installer to call home or power the server off",
        deadline_s=timeout,
    )


async def await_install(ctx: StepContext) -> Outcome:
    assert ctx.job.id is not None
    async with ctx.runtime.db.session() as session:
        call = await deployment.call_home_seen(session, ctx.job.id)
    if call is not None:
        ctx.note(f"The installer called home ({call.caller or 'no details'}).")
        return _to_chores(ctx, "finalise", ["off", "eject", "boot_disk", "on"])
    system = await (await ctx.bmc()).get(ctx.access.system_path)
    ctx.power_state = power_state(value(system, "PowerState"))
    if ctx.power_state == "On":
        ctx.data["seen_on"] = True
    elif ctx.power_state == "Off" and ctx.data.get("then_on"):
        ctx.data["then_on"] = False
        moves = _plan(ctx, PowerAction.on, "Off")
        refused = await _reset(ctx, moves[0]) if moves else None
        if refused is not None:
            return refused
    elif ctx.power_state == "Off" and ctx.data["seen_on"]:
        ctx.note("The installer powered the server off.")
        return _to_chores(ctx, "finalise", ["eject", "boot_disk", "on"])
    if ctx.step_expired:
        timeout = _params(ctx).timeout or ctx.settings.deploy_install_timeout_s
        return _fail(
            ctx,
            INSTALLER_TIMEOUT,
            f"The installer neither called home nor powered the server off in {timeout:g} s.",
        )
    return Poll(ctx.settings.job_poll_interval_s)


def _to_chores(ctx: StepContext, step: str, chores: list[str]) -> Outcome:
    ctx.data.update(chores=chores, chores_for=step)
    ctx.progress = 80
    return Next(step, deadline_s=ctx.settings.job_cleanup_timeout_s)


async def _chore(ctx: StepContext, chore: str) -> Outcome | None:
    """Carry out one chore; None when it is done, else the outcome to wait with."""
    if chore == "eject":
        await _eject_all(ctx)
        return None
    if chore in ("boot_disk", "clear_boot"):
        wanted = (
            {"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Once"}
            if chore == "boot_disk"
            else {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"}
        )
        mode = ctx.data.get("boot", {}).get("BootSourceOverrideMode")
        if mode is not None:
            wanted["BootSourceOverrideMode"] = mode
        refused = await _patch_boot(ctx, wanted)
        return refused
    system = await (await ctx.bmc()).get(ctx.access.system_path)
    ctx.power_state = power_state(value(system, "PowerState"))
    want = "Off" if chore == "off" else "On"
    if ctx.power_state == want:
        return None
    if ctx.unsettled_intent is None and not ctx.data.get("sent"):
        action = PowerAction.off if chore == "off" else PowerAction.on
        try:
            moves = _plan(ctx, action, ctx.power_state)
        except Unsupported as exc:
            return Fail(exc.code, exc.reason)
        if moves:
            refused = await _reset(ctx, moves[0])
            if refused is not None:
                return refused
            ctx.data["sent"] = True
    return Poll(ctx.settings.job_poll_interval_s)


async def chores(ctx: StepContext) -> Outcome:
    """``finalise`` and ``cleanup``: the chores left, one at a time."""
    if ctx.data.get("chores_for") != ctx.job.step:
        # The engine moved a cancelled or expired job here: undo only what was done.
        todo = []
        if ctx.data.get("cycled"):
            todo.append("off")
        if ctx.data.get("touched"):
            todo += ["eject", "clear_boot"]
        ctx.data.update(chores=todo, chores_for=ctx.job.step)
    todo = ctx.data["chores"]
    while todo:
        waiting = await _chore(ctx, todo[0])
        if waiting is not None:
            if isinstance(waiting, Poll) and ctx.step_expired:
                return Fail("power_state_timeout", f"PowerState did not read {todo[0]} in time.")
            return waiting
        todo.pop(0)
        ctx.data["sent"] = False
    assert ctx.job.id is not None
    async with ctx.runtime.db.session() as session:
        await deployment.release(session, ctx.runtime.artifacts, ctx.job.id)
        await session.commit()
    ctx.progress = 100
    if ctx.job.step == "cleanup":
        return Done("Cleaned up: media ejected, boot override cleared.")
    return Done("Deployed: the server boots the installed system from disk.")


DEPLOYMENT = JobKind(
    name="deployment",
    first_step="prepare",
    steps={
        "prepare": prepare,
        "inspect": inspect,
        "eject": eject,
        "insert": insert,
        "verify_mount": verify_mount,
        "boot": boot,
        "verify_boot": verify_boot,
        "cycle": cycle,
        "await_install": await_install,
        "finalise": chores,
        "cleanup": chores,
    },
    cleanup_step="cleanup",
)
