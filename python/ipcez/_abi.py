"""The numbers of the C ABI: result codes, error kinds, error detail fields, transports.

Each name is the header's ``IPCEZ_*`` constant without its prefix, with the same value
(``tests/test_ffi_table.py`` checks every one against ``ipcez.h``, both ways).  Plain
ints, not enums: they are compared on every send and receive.  This module loads
nothing, so the exception table can use the names without the native library.
"""

from __future__ import annotations

from typing import Dict

# ipcez_result: what a fallible call returns.
RESULT_OK = 0
RESULT_TIMEOUT = 1
RESULT_ERROR = 2

# ipcez_error_kind: what ipcez_error_code returns.
ERROR_KIND_IO = 1
ERROR_KIND_CONNECTION_LOST = 2
ERROR_KIND_MESSAGE_TOO_LARGE = 3
ERROR_KIND_WS = 4
ERROR_KIND_UNSUPPORTED_COMBINATION = 5
ERROR_KIND_DETECTION = 6
ERROR_KIND_RECIPIENT_ACK_TIMEOUT = 7
ERROR_KIND_PANIC = 8
ERROR_KIND_NULL_PARAMETER = 9
ERROR_KIND_FORKED = 10

# ipcez_error_field: the selectors of ipcez_error_detail.
ERROR_FIELD_TARGET = 0
ERROR_FIELD_OS = 1
ERROR_FIELD_VARIABLE = 2
ERROR_FIELD_GUIDANCE = 3
ERROR_FIELD_CLOSE_CODE = 4
ERROR_FIELD_CLOSE_REASON = 5

# ipcez_transport: what ipcez_resolve and ipcez_socket_transport report.
TRANSPORT_UNIX = 1
TRANSPORT_WEBSOCKET = 2
TRANSPORT_NAMED_PIPE = 3

#: Transport number -> the name Python shows.
TRANSPORTS: Dict[int, str] = {
    TRANSPORT_UNIX: "unix",
    TRANSPORT_WEBSOCKET: "websocket",
    TRANSPORT_NAMED_PIPE: "named_pipe",
}
