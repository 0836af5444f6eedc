"""The registrar's command router. The ``node.register`` handler arrives with registration."""

from shared.messaging.consumer import CommandRouter
from shared.messaging.streams import REGISTRAR

router = CommandRouter(REGISTRAR)
