/*
 * fuzz_tp_decode.c - libFuzzer harness for the transport's message decoder.
 *
 * tp_decode_request() is the first code every received byte meets on a D-node: framing
 * (magic, header length, payload length against the buffer and the limit) and the protobuf-c
 * header.  Any input must give CAIRN_EPROTO or a request whose lengths are consistent, and
 * never a crash, leak or out-of-bounds access (the build adds ASan and UBSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Cairn__Request *req = NULL;
    /* Copy into an exact-size heap buffer so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (tp_decode_request(buf, size, 1u << 20, &req) == 0) {
        if (req->payload_len > 1u << 20)
            abort();
        if (req->payload_len && size != TP_HDR_SLOT + req->payload_len)
            abort();
        if (req->key.len && !req->key.data)
            abort();
        cairn__request__free_unpacked(req, NULL);
    }
    free(buf);
    return 0;
}
