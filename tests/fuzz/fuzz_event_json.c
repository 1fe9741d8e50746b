/* fuzz_event_json.c - libFuzzer harness for the JSON conversation-event path
 * (daemon/event_json.c): event_decode_any() with no content type (the byte
 * sniffing a record without a content-type header gets), event_decode_json()
 * and event_json_to_msgpack() (guardctl send) on the same bytes.
 *
 * Properties: a rejected event carries a reason code; JSON and msgpack spell
 * the same schema, so when the JSON decodes, its msgpack conversion decodes to
 * the same event (compared through event_encode).
 */
#include "fuzz_common.h"
#include "event.h"
#include <string.h>

static const EventLimits lim = {.max_event_bytes = 65536, .max_messages = 16, .max_message_bytes = 512};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ConversationEvent ev, ev2;
    const char *reason = NULL;
    char msg[256], err[200];
    if (event_decode_any(data, size, NULL, &lim, &ev, &reason, msg, sizeof msg) == 0) event_free(&ev);
    else FUZZ_ASSERT(reason && *reason, "rejected event (sniffed) without a reason code");

    int rc = event_decode_json(data, size, &lim, &ev, &reason, msg, sizeof msg);
    if (rc != 0) FUZZ_ASSERT(reason && *reason, "rejected JSON event without a reason code");
    size_t n;
    uint8_t *mp = event_json_to_msgpack(data, size, &n, err, sizeof err);
    if (rc == 0) {
        FUZZ_ASSERT(mp, "JSON event decodes but does not convert to msgpack: %s", err);
        EventLimits big = lim;
        big.max_event_bytes = n;
        FUZZ_ASSERT(event_decode(mp, n, &big, &ev2, &reason, msg, sizeof msg) == 0,
                    "JSON event decodes, its msgpack form does not: %s: %s", reason, msg);
        size_t n1, n2;
        uint8_t *e1 = event_encode(&ev, &n1), *e2 = event_encode(&ev2, &n2);
        FUZZ_ASSERT(e1 && e2 && n1 == n2 && !memcmp(e1, e2, n1), "JSON and msgpack decodes differ");
        free(e1);
        free(e2);
        event_free(&ev2);
        event_free(&ev);
    }
    free(mp);
    return 0;
}
