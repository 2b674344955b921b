"""Every state machine whose transitions the database guards (``pipeline_transitions``).

The registry lives here, not in ``layers.pipeline``, so that the generic machinery never
imports an entity; a new machine (wishes, claims, bookings, visits) is added to this tuple.
"""

from __future__ import annotations

import logging

from layers.pipeline.machine import StateMachine
from layers.requests.workflow import MACHINE as REQUESTS

logger = logging.getLogger(__name__)

MACHINES: tuple[StateMachine, ...] = (REQUESTS,)
