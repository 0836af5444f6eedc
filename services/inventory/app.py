"""The inventory worker's command router. ``server.inventory`` arrives with inventory."""

from shared.messaging.consumer import CommandRouter
from shared.messaging.streams import INVENTORY

router = CommandRouter(INVENTORY)
