// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), used for the per-tensor
// checksums of .vcm files. The SSE4.2 path uses the crc32 instruction, 8 bytes at a time.
#include "internal.h"
#include <nmmintrin.h>

uint32_t vck_crc32c_ref(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t c = ~crc & 0xffffffffu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

uint32_t vck_crc32c(uint32_t crc, const void *data, size_t n) {
    return vck_has(VCK_CPU_SSE42) ? crc32c_sse42(crc, data, n) : vck_crc32c_ref(crc, data, n);
}
