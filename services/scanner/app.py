"""The scanner's command router; ``scan.range``/``scan.chunk`` handlers arrive with discovery."""

from shared.messaging.consumer import CommandRouter
from shared.messaging.streams import SCANNER

router = CommandRouter(SCANNER)
