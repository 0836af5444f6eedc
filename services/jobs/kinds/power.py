"""Power jobs: a power action becomes the resets this BMC allows, each POSTed once and then
confirmed by reading PowerState back.

Steps: ``inspect`` (read the system, its advertised ResetTypes and PowerState; make the plan)
→ per planned reset ``reset`` (record the intent, POST it) → ``await_power`` (poll PowerState
until it reads as expected) → the next reset, or ``completed``.

The plan (`plan`) maps each action onto the allowed ResetTypes, with fallbacks where a BMC lacks
one: no GracefulRestart → GracefulShutdown then On; no PowerCycle → ForceOff then On; no
ForceRestart → PowerCycle, else ForceOff then On. A server that is already where the action
leads needs no POST; a restart of a server that is Off powers it on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from services.jobs.engine import JobKind, StepContext
from shared.core.clock import utcnow
from shared.lifecycle.job import Done, Fail, Next, Outcome, Poll, Retry
from shared.models.jobs import BMC_BUSY, BMC_REFUSED, BMC_UNREACHABLE, PowerAction, PowerRequest
from shared.redfish import RequestRefused, ResponseLost
from shared.redfish.control import allowable_values, find_action
from shared.redfish.normalise import power_state
from shared.redfish.resources import JsonObject, value

RESET = "#ComputerSystem.Reset"
# A restart the BMC accepted but that showed no sign (PowerState leaving On, a new boot in
# BootProgress) is taken as done after this long: some BMCs restart too fast to be seen.
RESTART_EVIDENCE_WINDOW_S = 15.0
_ON = ("On", "PoweringOn")


@dataclass(frozen=True)
class Move:
    """One reset of a plan and what confirms it."""

    reset: str
    expect: str | None  # PowerState to read back; None: nothing to wait for (Nmi)
    restart: bool = False  # passes through a boot of the host
    graceful: bool = False  # waits for the operating system


class Unsupported(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def plan(action: PowerAction, allowed: tuple[str, ...] | None, power: str | None) -> list[Move]:
    """The resets that carry out ``action`` on a BMC allowing ``allowed`` (None: the BMC does not
    say, so every standard ResetType) from PowerState ``power``; raises `Unsupported`."""

    def can(reset_type: str) -> bool:
        return allowed is None or reset_type in allowed

    def first(*choices: str) -> str | None:
        return next((c for c in choices if can(c)), None)

    def need(reset_type: str | None, what: str) -> str:
        if reset_type is None:
            offered = ", ".join(allowed or ())
            raise Unsupported(
                "unsupported_action",
                f"The BMC offers no ResetType for {what} (it allows {offered}).",
            )
        return reset_type

    def power_on() -> Move:
        return Move(need(first("On", "ForceOn"), "powering on"), "On")

    def force_off() -> Move:
        return Move(need(first("ForceOff"), "forcing the power off"), "Off")

    powered = power in _ON
    if action is PowerAction.on:
        return [] if powered else [power_on()]
    if action is PowerAction.off:
        return [force_off()] if powered else []
    if action is PowerAction.graceful_shutdown:
        if not powered:
            return []
        reset = need(first("GracefulShutdown", "PushPowerButton"), "a graceful shutdown")
        return [Move(reset, "Off", graceful=True)]
    if action is PowerAction.nmi:
        if not powered:
            raise Unsupported(
                "invalid_power_state", f"An NMI needs a running server; PowerState is {power}."
            )
        return [Move(need(first("Nmi"), "a diagnostic interrupt (NMI)"), None)]
    if not powered:
        return [power_on()]  # restarting a server that is off: it is turned on (as Ironic does)
    if action is PowerAction.graceful_restart:
        if can("GracefulRestart"):
            return [Move("GracefulRestart", "On", restart=True, graceful=True)]
        shutdown = need(first("GracefulShutdown", "PushPowerButton"), "a graceful restart")
        return [Move(shutdown, "Off", graceful=True), power_on()]
    if action is PowerAction.restart and can("ForceRestart"):
        return [Move("ForceRestart", "On", restart=True)]
    if can("PowerCycle"):  # power_cycle, or restart without ForceRestart
        return [Move("PowerCycle", "On", restart=True)]
    return [force_off(), power_on()]


def _moves(ctx: StepContext) -> list[Move]:
    return [Move(**m) for m in ctx.data["plan"]]


def _params(ctx: StepContext) -> PowerRequest:
    return PowerRequest.model_validate(ctx.job.params)


def _boot_marker(system: JsonObject) -> list[Any] | None:
    """What changes with every boot of the host (BootProgress's last state and its time), where
    the BMC reports it."""
    progress = value(system, "BootProgress")
    if not isinstance(progress, dict) or progress.get("LastState") is None:
        return None
    return [progress.get("LastState"), progress.get("LastStateTime")]


async def _read(ctx: StepContext) -> JsonObject:
    system = await (await ctx.bmc()).get(ctx.access.system_path)
    ctx.power_state = power_state(value(system, "PowerState"))
    return system


async def inspect(ctx: StepContext) -> Outcome:
    system = await _read(ctx)
    action = find_action(system, RESET)
    if action is None:
        return Fail("unsupported_action", "The system has no ComputerSystem.Reset action.")
    allowed = await allowable_values(await ctx.bmc(), action, "ResetType")
    requested = _params(ctx).action
    try:
        moves = plan(requested, allowed, ctx.power_state)
    except Unsupported as exc:
        return Fail(exc.code, exc.reason)
    ctx.data.update(target=action.target, allowed=allowed, plan=[asdict(m) for m in moves], index=0)
    if not moves:
        return Done(f"PowerState already reads {ctx.power_state}; nothing to do.")
    shown = " then ".join(m.reset for m in moves)
    offered = ", ".join(allowed) if allowed is not None else "not advertised"
    ctx.note(f"{requested.value}: ResetType {shown} (BMC allows: {offered}).")
    ctx.progress = 0
    return _to_reset(ctx)


def _to_reset(ctx: StepContext) -> Next:
    # The reset step retries refusals of a BMC still busy with a transition until this deadline.
    return Next("reset", deadline_s=ctx.settings.job_power_timeout_s, expiry_code=BMC_BUSY)


async def reset(ctx: StepContext) -> Outcome:
    moves = _moves(ctx)
    move = moves[ctx.data["index"]]
    unsettled = ctx.unsettled_intent
    if unsettled is not None:
        ctx.note(
            f"The answer to ResetType={move.reset} was not recorded (the worker stopped); "
            "reading PowerState before asking again."
        )
        # What the BMC showed before the lost call, as the intent recorded it.
        ctx.data.update(unsettled.get("before", {}), uncertain=True)
        return _to_await(ctx, move)
    bmc = await ctx.bmc()
    # The evidence a restart is judged by, as it was before the call (committed with the
    # intent, so a delivery that finds the intent unsettled judges by the same).
    before: dict[str, Any] = {"seen_off": False, "marker": None}
    if move.restart:
        before["marker"] = _boot_marker(await _read(ctx))
    ctx.data.update(before, uncertain=False)
    body = {"ResetType": move.reset}
    await ctx.intend({"method": "POST", "path": ctx.data["target"], "body": body, "before": before})
    try:
        result = await bmc.post(ctx.data["target"], body)
    except ResponseLost as exc:
        ctx.note(f"{exc}; reading PowerState before asking again.", code=BMC_UNREACHABLE)
        ctx.data["uncertain"] = True
        return _to_await(ctx, move)
    except RequestRefused as exc:
        ctx.refused(exc.status, exc.message_id)
        if exc.status == 409:
            # iDRAC refuses On while (and just after) powering off: the transition must end.
            return Retry(
                BMC_BUSY,
                f"BMC refused ResetType={move.reset} (409 {exc.message_id or ''}): a power "
                "transition is still under way; trying again.",
                ctx.settings.job_poll_interval_s,
                max_attempts=None,  # bounded by the step's deadline instead
            )
        return Fail(BMC_REFUSED, f"BMC refused ResetType={move.reset}: {exc}")
    ctx.started(result)
    ctx.note(f"BMC accepted ResetType={move.reset} ({result.status}).")
    return _to_await(ctx, move)


def _to_await(ctx: StepContext, move: Move) -> Outcome:
    if move.expect is None:
        return _next_move(ctx, f"ResetType={move.reset} sent.")
    params = _params(ctx)
    if move.graceful:
        deadline = params.timeout or ctx.settings.job_graceful_timeout_s
        code = "graceful_shutdown_timeout"
    else:
        deadline, code = ctx.settings.job_power_timeout_s, "power_state_timeout"
    return Next(
        "await_power",
        after=ctx.settings.job_poll_interval_s,
        waiting_for=f"PowerState {move.expect} after ResetType={move.reset}",
        deadline_s=deadline,
        expiry_code=code,
    )


def _next_move(ctx: StepContext, text: str) -> Outcome:
    moves = _moves(ctx)
    ctx.data["index"] += 1
    ctx.progress = 100 * ctx.data["index"] // len(moves)
    if ctx.data["index"] >= len(moves):
        return Done(text)
    ctx.note(text)
    return _to_reset(ctx)


async def await_power(ctx: StepContext) -> Outcome:
    move = _moves(ctx)[ctx.data["index"]]
    system = await _read(ctx)
    state = ctx.power_state
    if state != "On":  # PoweringOff, Off, PoweringOn: the host is going through a restart
        ctx.data["seen_off"] = True
    if state == move.expect:
        restarted = _restarted(ctx, move, system) if move.restart else True
        if restarted is None:
            return Fail(
                "restart_unconfirmed",
                f"The answer to ResetType={move.reset} was lost and the BMC shows no sign of a "
                "restart (PowerState stayed On, it reports no BootProgress): check the server "
                "and restart it again if it did not happen.",
            )
        if restarted:
            return _next_move(ctx, f"PowerState reads {state} (ResetType={move.reset}).")
    if ctx.step_expired:
        return _expired(ctx, move, state)
    return Poll(ctx.settings.job_poll_interval_s)


def _restarted(ctx: StepContext, move: Move, system: JsonObject) -> bool | None:
    """Whether a restart happened: PowerState read other than On since the reset, or
    BootProgress shows a new boot (True); not yet (False) — always, for a graceful restart,
    until a sign is seen; or, once the window for a sign of a forced one has passed without
    one: True if the BMC accepted the reset (some restart too fast to be seen),
    False if its answer was lost and the BMC reports boots (none happened: the reset is sent
    again at the step's deadline), None if its answer was lost and the BMC cannot tell."""
    before = ctx.data.get("marker")
    if ctx.data.get("seen_off") or (before is not None and _boot_marker(system) != before):
        return True
    started: datetime = ctx.job.step_started_at or utcnow()
    window = RESTART_EVIDENCE_WINDOW_S
    if ctx.job.step_deadline_at is not None:  # within the step's own time, however short
        window = min(window, (ctx.job.step_deadline_at - started).total_seconds() / 2)
    if (utcnow() - started).total_seconds() < window:
        return False
    if ctx.data.get("uncertain"):
        return False if before is not None else None
    if move.graceful:
        # The operating system decides whether a graceful restart happens (one that ignores
        # ACPI leaves the host running): the BMC's acceptance proves nothing, so only a sign
        # counts, until the step's deadline.
        return False
    ctx.note("No sign of the restart was seen (PowerState stayed On); taking the BMC's word.")
    return True


def _expired(ctx: StepContext, move: Move, state: str | None) -> Outcome:
    params = _params(ctx)
    moves = _moves(ctx)
    index = ctx.data["index"]
    unseen = move.restart and state == move.expect and not ctx.data.get("seen_off")
    if unseen and move.graceful and ctx.data.get("marker") is None:
        # Without BootProgress a warm restart (the power stays on) looks like none at all:
        # neither failing it as ignored nor forcing a second restart would be honest.
        return Fail(
            "restart_unconfirmed",
            f"The BMC accepted ResetType={move.reset} but shows no sign of a restart: PowerState "
            f"stayed {state} and it reports no BootProgress, so a restart that keeps the power "
            "on cannot be told from none. Check the server, and restart it again if it did not "
            "happen.",
        )
    if move.graceful and params.force_after_timeout:
        ctx.note("The operating system did not shut down in time; forcing it.")
        try:
            forced = plan(
                PowerAction.off if move.expect == "Off" else PowerAction.restart,
                tuple(ctx.data["allowed"]) if ctx.data.get("allowed") is not None else None,
                "On",
            )
        except Unsupported as exc:
            return Fail("graceful_shutdown_timeout", f"Not shut down in time, and {exc.reason}")
        ctx.data["plan"] = [asdict(m) for m in [*moves[:index], *forced, *moves[index + 1 :]]]
        return _to_reset(ctx)
    if ctx.data.get("uncertain") and ctx.data.get("reposts", 0) < 1:
        ctx.data["reposts"] = ctx.data.get("reposts", 0) + 1
        ctx.note(
            f"PowerState never became {move.expect}: the lost ResetType={move.reset} did not "
            "reach the BMC; sending it again."
        )
        return _to_reset(ctx)
    code = "graceful_shutdown_timeout" if move.graceful else "power_state_timeout"
    if unseen:
        return Fail(
            code,
            f"No sign of a restart after ResetType={move.reset}: PowerState stayed {state} "
            "and BootProgress shows no new boot (the operating system may ignore the request).",
        )
    return Fail(
        code,
        f"PowerState still reads {state} after ResetType={move.reset} (expected {move.expect}).",
    )


POWER = JobKind(
    name="power",
    first_step="inspect",
    steps={"inspect": inspect, "reset": reset, "await_power": await_power},
)
