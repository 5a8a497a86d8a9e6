"""The CAP alert builder as the renderers name it (`cap.cap_alert`, `cap.MsgType`, …).

The builder itself lives in tocsin.cap.alert, below the service layer, because publishing
makes and stores each message (tocsin.service.exports); this module only hands it on.
"""

from __future__ import annotations

from tocsin.cap.alert import CAP_NS as CAP_NS
from tocsin.cap.alert import MsgType as MsgType
from tocsin.cap.alert import Reference as Reference
from tocsin.cap.alert import cap_alert as cap_alert
from tocsin.cap.alert import cap_time as cap_time
from tocsin.cap.alert import identifier_of as identifier_of
