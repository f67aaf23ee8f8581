/* The C ABI on Windows: this program is linked with ipcez_ffi.dll and, in one process,
 * listens on a named pipe, connects to it, and sends a message each way (the sender
 * waiting for the recipient's ack through the named events). It also checks that an
 * oversized message is refused and that the connection stays usable after it.
 * Built with x86_64-w64-mingw32-gcc and run under Wine by `python build.py test --windows`.
 * Exit status 0 when every check passed; each failed check prints a line and exits 1. */
#include <stdio.h>
#include <string.h>
#include <windows.h>

#include "ipcez.h"

static int fail(const char *what, ipcez_error *err) {
    const uint8_t *text = NULL;
    size_t len = ipcez_error_message(err, &text);
    fprintf(stderr, "FAIL %s: kind %u: %.*s\n", what, (unsigned)ipcez_error_code(err), (int)len,
            text ? (const char *)text : "");
    ipcez_error_free(err);
    return 1;
}

static int expect_message(const ipcez_socket *s, const char *want, const char *what) {
    ipcez_message *msg = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    ipcez_error *err = NULL;
    ipcez_result r = ipcez_socket_recv(s, 10000, &msg, &data, &len, &err);
    if (r == IPCEZ_RESULT_ERROR) return fail(what, err);
    if (r == IPCEZ_RESULT_TIMEOUT) {
        fprintf(stderr, "FAIL %s: nothing received within 10 s\n", what);
        return 1;
    }
    int ok = len == strlen(want) && memcmp(data, want, len) == 0;
    if (!ok) fprintf(stderr, "FAIL %s: got %.*s\n", what, (int)len, (const char *)data);
    ipcez_message_free(msg);
    return !ok;
}

int main(void) {
    /* The environment that makes a plain name a local Windows endpoint. */
    SetEnvironmentVariableA("IPCEZ_TARGET", "local");
    SetEnvironmentVariableA("IPCEZ_OS", "windows");
    char name[64];
    snprintf(name, sizeof name, "ipcez-c-abi-%lu", (unsigned long)GetCurrentProcessId());
    ipcez_error *err = NULL;

    ipcez_listener *listener = NULL;
    if (ipcez_listen((const uint8_t *)name, strlen(name), 0600, NULL, 0, NULL, 0, 5000, &listener, &err))
        return fail("listen", err);
    ipcez_message *address = ipcez_listener_address(listener);
    char expected[96];
    snprintf(expected, sizeof expected, "\\\\.\\pipe\\%s", name);
    if (ipcez_message_len(address) != strlen(expected) ||
        memcmp(ipcez_message_data(address), expected, strlen(expected)) != 0) {
        fprintf(stderr, "FAIL listener address is %.*s, expected %s\n", (int)ipcez_message_len(address),
                (const char *)ipcez_message_data(address), expected);
        return 1;
    }
    ipcez_message_free(address);

    ipcez_socket *client = NULL;
    if (ipcez_connect((const uint8_t *)name, strlen(name), 5000, &client, &err)) return fail("connect", err);
    if (ipcez_socket_transport(client) != IPCEZ_TRANSPORT_NAMED_PIPE) {
        fprintf(stderr, "FAIL transport %u, expected a named pipe\n", (unsigned)ipcez_socket_transport(client));
        return 1;
    }
    ipcez_socket *server = NULL;
    if (ipcez_listener_accept(listener, 10000, &server, &err) != IPCEZ_RESULT_OK)
        return err ? fail("accept", err) : (fprintf(stderr, "FAIL accept: timed out\n"), 1);

    const char *ping = "ping from C", *pong = "pong from C";
    if (ipcez_socket_send(client, (const uint8_t *)ping, strlen(ping), 5000, &err) != IPCEZ_RESULT_OK)
        return err ? fail("client send (acked)", err) : (fprintf(stderr, "FAIL client send: no ack\n"), 1);
    if (expect_message(server, ping, "server recv")) return 1;
    if (ipcez_socket_send(server, (const uint8_t *)pong, strlen(pong), 5000, &err) != IPCEZ_RESULT_OK)
        return err ? fail("server send (acked)", err) : (fprintf(stderr, "FAIL server send: no ack\n"), 1);
    if (expect_message(client, pong, "client recv")) return 1;

    size_t too_big = 4 * 1024 * 1024 + 1;
    uint8_t *big = calloc(too_big, 1);
    if (!big) return 1;
    if (ipcez_socket_send(client, big, too_big, 5000, &err) != IPCEZ_RESULT_ERROR ||
        ipcez_error_code(err) != IPCEZ_ERROR_KIND_MESSAGE_TOO_LARGE) {
        fprintf(stderr, "FAIL a 4 MiB + 1 message was not refused as too large\n");
        return 1;
    }
    ipcez_error_free(err);
    free(big);
    if (ipcez_socket_send(client, (const uint8_t *)"after", 5, 5000, &err) != IPCEZ_RESULT_OK)
        return err ? fail("send after the refusal", err) : 1;
    if (expect_message(server, "after", "recv after the refusal")) return 1;

    ipcez_socket_free(client);
    ipcez_socket_free(server);
    ipcez_listener_free(listener);
    printf("C ABI over a named pipe (ipcez %s): round trip, acks, size limit: ok\n", ipcez_version());
    return 0;
}
