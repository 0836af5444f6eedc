"""The webhooks worker kind: the dispatcher (events → deliveries), the delivery loop, the
delivery log's pruning, run as background tasks of the process's runtime, and the answers to
the API's test requests."""

from __future__ import annotations

from services.webhooks.deliveries import DeliveryLoop, prune_forever
from services.webhooks.dispatch import Dispatcher
from services.webhooks.testing import TestResponder
from shared.platform.runtime import Runtime


def attach(runtime: Runtime) -> None:
    """Start the worker on a connected runtime; closing the runtime stops it."""
    # Fails at start, not at the first delivery, when production mode has no key to decrypt
    # the signing secrets with.
    _ = runtime.credentials
    loop = DeliveryLoop(runtime)
    runtime.spawn(loop.run())
    runtime.spawn(Dispatcher(runtime, loop.wake).run())
    runtime.spawn(prune_forever(runtime))
    runtime.spawn(TestResponder(runtime).start())
