// CVCManifest: the .vcm manifest codec (formats/vcm.proto, formats/vcm.md) over protobuf-c, with a
// flat API so that Swift never touches protobuf-c structs, plus SHA-256 for the provenance record.
//
// Conventions
// - Every symbol has the `vcm_` prefix; the generated protobuf-c header is private to this target.
// - Strings are copied into caller buffers: `vcm_manifest_string(m, f, buf, cap)` returns the full
//   length in bytes (without the terminating NUL) and copies min(len, cap - 1) bytes + NUL when
//   cap > 0, so a caller asks once with cap 0 and again with a buffer of len + 1.
// - Decoding is safe on hostile input: the input length is bounded by the caller, every
//   allocation protobuf-c makes is charged to a budget (`alloc_limit`), and after unpacking the
//   codec checks what protobuf-c does not (shape rank, strings present). Value checks that need
//   the file (offsets, sizes, dtypes) are done by the Swift reader.
#ifndef CVCMANIFEST_H
#define CVCMANIFEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Largest tensor rank a manifest may declare.
#define VCM_MAX_DIMS 8

/// String fields (manifest and provenance).
enum {
    VCM_STR_MODEL_KIND = 1,
    VCM_STR_CONFIG_JSON = 2,
    VCM_STR_CONFIG_YAML = 3,
    VCM_STR_TEXT_CONFIG_JSON = 4,
    VCM_STR_PRESET = 5,
    VCM_STR_SOURCE_NAME = 6,
    VCM_STR_SOURCE_FORMAT = 7,
    VCM_STR_CONVERTER = 8,
    VCM_STR_CONVERTER_VERSION = 9,
};

/// Byte-string fields.
enum {
    VCM_BYTES_VOCABULARY_ZSTD = 1,
    VCM_BYTES_SOURCE_SHA256 = 2,
};

/// Integer fields of the manifest (signed values are returned as their two's complement).
enum {
    VCM_U64_ALIGNMENT = 1,
    VCM_U64_VOCABULARY_SIZE = 2,
    VCM_U64_VOCABULARY_CRC32C = 3,
    VCM_U64_SOURCE_SIZE = 4,
    VCM_U64_CREATED_UNIX = 5,
    VCM_U64_HAS_PROVENANCE = 6,
};

/// Integer fields of a tensor record.
enum {
    VCM_TENSOR_DTYPE = 1,
    VCM_TENSOR_COMPRESSION = 2,
    VCM_TENSOR_NDIM = 3,
    VCM_TENSOR_OFFSET = 4,
    VCM_TENSOR_SIZE = 5,
    VCM_TENSOR_STORED_SIZE = 6,
    VCM_TENSOR_CRC32C = 7,
};

// ---------------------------------------------------------------------------------------------
// Encoding: a builder collects the fields (copying every string), then packs them.
// ---------------------------------------------------------------------------------------------
typedef struct vcm_builder vcm_builder;

/// A new empty builder, or NULL when out of memory.
vcm_builder *vcm_builder_new(void);
void vcm_builder_free(vcm_builder *b);
/// Sets a VCM_STR_* field (copied). Returns 0, or -1 (unknown field / out of memory).
int vcm_builder_set_string(vcm_builder *b, int field, const char *value);
/// Sets the compressed vocabulary (copied) with its decompressed size and CRC-32C.
int vcm_builder_set_vocabulary(vcm_builder *b, const uint8_t *zstd, size_t count, uint64_t size, uint32_t crc32c);
/// Sets the source size, its SHA-256 (32 bytes, or NULL) and the creation time.
int vcm_builder_set_source(vcm_builder *b, uint64_t size, const uint8_t *sha256, int64_t created_unix);
void vcm_builder_set_alignment(vcm_builder *b, uint32_t alignment);
/// Appends a provenance option (both strings copied).
int vcm_builder_add_option(vcm_builder *b, const char *key, const char *value);
/// Appends a tensor record (name and shape copied). ndim <= VCM_MAX_DIMS.
int vcm_builder_add_tensor(vcm_builder *b, const char *name, int32_t dtype, const uint64_t *shape, size_t ndim,
                           uint64_t offset, uint64_t size, int32_t compression, uint64_t stored_size, uint32_t crc32c);
/// Bytes `vcm_builder_pack` writes.
size_t vcm_builder_packed_size(const vcm_builder *b);
/// Packs into `out` (at least vcm_builder_packed_size bytes); returns the bytes written.
size_t vcm_builder_pack(const vcm_builder *b, uint8_t *out);

// ---------------------------------------------------------------------------------------------
// Decoding: a read-only handle with index accessors.
// ---------------------------------------------------------------------------------------------
typedef struct vcm_manifest vcm_manifest;

/// Decodes `len` bytes. protobuf-c allocations beyond `alloc_limit` bytes in total fail the
/// decode. Returns NULL on failure with a message in `err` (NUL-terminated, truncated to errcap).
vcm_manifest *vcm_manifest_decode(const uint8_t *data, size_t len, size_t alloc_limit, char *err, size_t errcap);
void vcm_manifest_free(vcm_manifest *m);

size_t vcm_manifest_string(const vcm_manifest *m, int field, char *buf, size_t cap);
/// Copies a VCM_BYTES_* field; returns its full length (copies min(len, cap)).
size_t vcm_manifest_bytes(const vcm_manifest *m, int field, uint8_t *buf, size_t cap);
uint64_t vcm_manifest_u64(const vcm_manifest *m, int field);

size_t vcm_manifest_option_count(const vcm_manifest *m);
size_t vcm_manifest_option_key(const vcm_manifest *m, size_t index, char *buf, size_t cap);
size_t vcm_manifest_option_value(const vcm_manifest *m, size_t index, char *buf, size_t cap);

size_t vcm_manifest_tensor_count(const vcm_manifest *m);
/// A VCM_TENSOR_* field of tensor `index` (0 when index is out of range).
uint64_t vcm_manifest_tensor_u64(const vcm_manifest *m, size_t index, int field);
/// Dimension `dim` of tensor `index` (0 when out of range).
uint64_t vcm_manifest_tensor_dim(const vcm_manifest *m, size_t index, size_t dim);
size_t vcm_manifest_tensor_name(const vcm_manifest *m, size_t index, char *buf, size_t cap);

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for the source hash in the provenance record.
// ---------------------------------------------------------------------------------------------
typedef struct {
    uint32_t state[8];
    uint64_t length;   // bytes hashed so far
    uint8_t block[64];
    uint32_t used;     // bytes in `block`
} vcm_sha256_ctx;

void vcm_sha256_init(vcm_sha256_ctx *ctx);
void vcm_sha256_update(vcm_sha256_ctx *ctx, const uint8_t *data, size_t count);
/// Writes the 32-byte digest; the context must be re-initialised before reuse.
void vcm_sha256_final(vcm_sha256_ctx *ctx, uint8_t *digest);
/// Whether the x86 SHA extensions are used. mode -1 queries (deciding by CPUID on first use);
/// 0 forces the portable code; 1 uses the extensions if the CPU has them. Returns the setting.
int vcm_sha256_hardware(int mode);

// ---------------------------------------------------------------------------------------------
// Summary statistics for `vcconv inspect --stats` (one pass, double accumulators).
// ---------------------------------------------------------------------------------------------
typedef struct {
    double min, max;   // over finite values (+inf / -inf when there are none)
    double sum, sumsq; // over finite values
    uint64_t finite;   // count of finite values
    uint64_t nonfinite; // NaN and infinities
} vcm_stats;

/// Accumulates `count` floats into `s` (initialise with vcm_stats_init; call repeatedly for chunks).
void vcm_stats_init(vcm_stats *s);
void vcm_stats_f32(vcm_stats *s, const float *x, size_t count);

#ifdef __cplusplus
}
#endif
#endif
