/* fuzz_event_msgpack.c - libFuzzer harness for the msgpack conversation-event
 * decoder (daemon/event.c, daemon/event_mp.c): the bytes of a Kafka record
 * value, exactly as guardd's consumer hands them to event_decode().
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks properties:
 *   - a rejected event always carries a reason code;
 *   - an accepted event re-encodes (event_encode) to bytes that decode again,
 *     and re-encoding those gives the same bytes (the codec is a fixed point);
 *   - record_to_json (guardctl tail) either renders the record or refuses it.
 * The limits are small so the fuzzer reaches the limit checks quickly.
 */
#include "fuzz_common.h"
#include "event.h"
#include <string.h>

static const EventLimits lim = {.max_event_bytes = 65536, .max_messages = 16, .max_message_bytes = 512};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ConversationEvent ev, ev2;
    const char *reason = NULL;
    char msg[256];
    if (event_decode(data, size, &lim, &ev, &reason, msg, sizeof msg) == 0) {
        size_t n1, n2;
        uint8_t *enc = event_encode(&ev, &n1);
        FUZZ_ASSERT(enc, "event_encode failed on a decoded event");
        EventLimits big = lim;
        big.max_event_bytes = n1;
        int rc = event_decode(enc, n1, &big, &ev2, &reason, msg, sizeof msg);
        FUZZ_ASSERT(rc == 0, "re-encoded event does not decode: %s: %s", reason, msg);
        uint8_t *enc2 = event_encode(&ev2, &n2);
        FUZZ_ASSERT(enc2 && n2 == n1 && !memcmp(enc, enc2, n1), "encode(decode(encode(e))) != encode(e)");
        free(enc);
        free(enc2);
        event_free(&ev2);
        event_free(&ev);
    } else {
        FUZZ_ASSERT(reason && *reason, "rejected event without a reason code");
    }
    free(record_to_json(data, size));
    return 0;
}
