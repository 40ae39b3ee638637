// The flat .vcm manifest codec over the protobuf-c code generated from formats/vcm.proto
// (generated/vcm.pb-c.c). See include/CVCManifest.h for the contract.
#include "CVCManifest.h"
#include "generated/vcm.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------
struct vcm_builder {
    Vcm__Manifest manifest;
    Vcm__Provenance provenance;
    size_t tensor_capacity;
    size_t option_capacity;
};

static char *dup_string(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

// protobuf-c's default for an unset proto3 string is the shared empty string; builder strings are
// either that or owned copies.
static void set_owned(char **slot, char *value) {
    if (*slot && *slot != protobuf_c_empty_string) free(*slot);
    *slot = value;
}

vcm_builder *vcm_builder_new(void) {
    vcm_builder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    vcm__manifest__init(&b->manifest);
    vcm__provenance__init(&b->provenance);
    b->manifest.provenance = &b->provenance;
    return b;
}

void vcm_builder_free(vcm_builder *b) {
    if (!b) return;
    Vcm__Manifest *m = &b->manifest;
    Vcm__Provenance *p = &b->provenance;
    char **strings[] = {&m->model_kind, &m->config_json, &m->config_yaml, &m->text_config_json, &m->preset,
                        &p->source_name, &p->source_format, &p->converter, &p->converter_version};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) set_owned(strings[i], NULL);
    free(m->vocabulary_zstd.data);
    free(p->source_sha256.data);
    for (size_t i = 0; i < m->n_tensors; i++) {
        free(m->tensors[i]->name);
        free(m->tensors[i]->shape);
        free(m->tensors[i]);
    }
    free(m->tensors);
    for (size_t i = 0; i < p->n_options; i++) {
        free(p->options[i]->key);
        free(p->options[i]->value);
        free(p->options[i]);
    }
    free(p->options);
    free(b);
}

static char **string_slot(vcm_builder *b, int field) {
    switch (field) {
    case VCM_STR_MODEL_KIND: return &b->manifest.model_kind;
    case VCM_STR_CONFIG_JSON: return &b->manifest.config_json;
    case VCM_STR_CONFIG_YAML: return &b->manifest.config_yaml;
    case VCM_STR_TEXT_CONFIG_JSON: return &b->manifest.text_config_json;
    case VCM_STR_PRESET: return &b->manifest.preset;
    case VCM_STR_SOURCE_NAME: return &b->provenance.source_name;
    case VCM_STR_SOURCE_FORMAT: return &b->provenance.source_format;
    case VCM_STR_CONVERTER: return &b->provenance.converter;
    case VCM_STR_CONVERTER_VERSION: return &b->provenance.converter_version;
    default: return NULL;
    }
}

int vcm_builder_set_string(vcm_builder *b, int field, const char *value) {
    char **slot = string_slot(b, field);
    if (!slot || !value) return -1;
    char *copy = dup_string(value);
    if (!copy) return -1;
    set_owned(slot, copy);
    return 0;
}

static int copy_bytes(ProtobufCBinaryData *dst, const uint8_t *src, size_t count) {
    uint8_t *p = NULL;
    if (count > 0) {
        p = malloc(count);
        if (!p) return -1;
        memcpy(p, src, count);
    }
    free(dst->data);
    dst->data = p;
    dst->len = count;
    return 0;
}

int vcm_builder_set_vocabulary(vcm_builder *b, const uint8_t *zstd, size_t count, uint64_t size, uint32_t crc32c) {
    if (copy_bytes(&b->manifest.vocabulary_zstd, zstd, count) != 0) return -1;
    b->manifest.vocabulary_size = size;
    b->manifest.vocabulary_crc32c = crc32c;
    return 0;
}

int vcm_builder_set_source(vcm_builder *b, uint64_t size, const uint8_t *sha256, int64_t created_unix) {
    b->provenance.source_size = size;
    b->provenance.created_unix = created_unix;
    return copy_bytes(&b->provenance.source_sha256, sha256, sha256 ? 32 : 0);
}

void vcm_builder_set_alignment(vcm_builder *b, uint32_t alignment) { b->manifest.alignment = alignment; }

int vcm_builder_add_option(vcm_builder *b, const char *key, const char *value) {
    Vcm__Provenance *p = &b->provenance;
    if (!key || !value) return -1;
    if (p->n_options == b->option_capacity) {
        size_t cap = b->option_capacity ? b->option_capacity * 2 : 8;
        Vcm__Option **grown = realloc(p->options, cap * sizeof *grown);
        if (!grown) return -1;
        p->options = grown;
        b->option_capacity = cap;
    }
    Vcm__Option *o = malloc(sizeof *o);
    if (!o) return -1;
    vcm__option__init(o);
    o->key = dup_string(key);
    o->value = dup_string(value);
    if (!o->key || !o->value) {
        free(o->key); free(o->value); free(o);
        return -1;
    }
    p->options[p->n_options++] = o;
    return 0;
}

int vcm_builder_add_tensor(vcm_builder *b, const char *name, int32_t dtype, const uint64_t *shape, size_t ndim,
                           uint64_t offset, uint64_t size, int32_t compression, uint64_t stored_size, uint32_t crc32c) {
    Vcm__Manifest *m = &b->manifest;
    if (!name || ndim > VCM_MAX_DIMS || (ndim > 0 && !shape)) return -1;
    if (m->n_tensors == b->tensor_capacity) {
        size_t cap = b->tensor_capacity ? b->tensor_capacity * 2 : 256;
        Vcm__Tensor **grown = realloc(m->tensors, cap * sizeof *grown);
        if (!grown) return -1;
        m->tensors = grown;
        b->tensor_capacity = cap;
    }
    Vcm__Tensor *t = malloc(sizeof *t);
    if (!t) return -1;
    vcm__tensor__init(t);
    t->name = dup_string(name);
    t->shape = ndim ? malloc(ndim * sizeof *t->shape) : NULL;
    if (!t->name || (ndim && !t->shape)) {
        free(t->name); free(t->shape); free(t);
        return -1;
    }
    if (ndim) memcpy(t->shape, shape, ndim * sizeof *t->shape);
    t->n_shape = ndim;
    t->dtype = (Vcm__DType)dtype;
    t->offset = offset;
    t->size = size;
    t->compression = (Vcm__Compression)compression;
    t->stored_size = stored_size;
    t->crc32c = crc32c;
    m->tensors[m->n_tensors++] = t;
    return 0;
}

size_t vcm_builder_packed_size(const vcm_builder *b) { return vcm__manifest__get_packed_size(&b->manifest); }

size_t vcm_builder_pack(const vcm_builder *b, uint8_t *out) { return vcm__manifest__pack(&b->manifest, out); }

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

// Every allocation protobuf-c makes while unpacking is charged to a budget, so a small hostile
// manifest cannot make the decoder allocate without bound. Each block carries its size in a
// 16-byte header so that frees can be credited back.
typedef struct {
    size_t used;
    size_t limit;
    int exceeded;
} budget;

static void *budget_alloc(void *data, size_t size) {
    budget *bd = data;
    if (size > bd->limit || bd->used > bd->limit - size) {
        bd->exceeded = 1;
        return NULL;
    }
    uint8_t *p = malloc(size + 16);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    bd->used += size;
    return p + 16;
}

static void budget_free(void *data, void *ptr) {
    if (!ptr) return;
    budget *bd = data;
    uint8_t *p = (uint8_t *)ptr - 16;
    size_t size;
    memcpy(&size, p, sizeof size);
    bd->used -= size;
    free(p);
}

struct vcm_manifest {
    budget bd;
    ProtobufCAllocator allocator;
    Vcm__Manifest *msg;
};

static void set_error(char *err, size_t cap, const char *fmt, ...) {
    if (!err || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

vcm_manifest *vcm_manifest_decode(const uint8_t *data, size_t len, size_t alloc_limit, char *err, size_t errcap) {
    if (!data && len > 0) {
        set_error(err, errcap, "no manifest bytes");
        return NULL;
    }
    vcm_manifest *m = calloc(1, sizeof *m);
    if (!m) {
        set_error(err, errcap, "out of memory");
        return NULL;
    }
    m->bd.limit = alloc_limit;
    m->allocator.alloc = budget_alloc;
    m->allocator.free = budget_free;
    m->allocator.allocator_data = &m->bd;
    static const uint8_t empty = 0;
    m->msg = vcm__manifest__unpack(&m->allocator, len, len ? data : &empty);
    if (!m->msg) {
        if (m->bd.exceeded) set_error(err, errcap, "manifest needs more than %zu bytes of memory to decode", alloc_limit);
        else set_error(err, errcap, "manifest is not a valid protobuf message (truncated or corrupt)");
        free(m);
        return NULL;
    }
    // What protobuf-c does not check: ranks, and strings that must exist.
    for (size_t i = 0; i < m->msg->n_tensors; i++) {
        const Vcm__Tensor *t = m->msg->tensors[i];
        if (t->n_shape > VCM_MAX_DIMS) {
            set_error(err, errcap, "tensor #%zu has rank %zu (at most %d)", i, t->n_shape, VCM_MAX_DIMS);
            vcm_manifest_free(m);
            return NULL;
        }
        if (!t->name) {
            set_error(err, errcap, "tensor #%zu has no name", i);
            vcm_manifest_free(m);
            return NULL;
        }
    }
    return m;
}

void vcm_manifest_free(vcm_manifest *m) {
    if (!m) return;
    if (m->msg) vcm__manifest__free_unpacked(m->msg, &m->allocator);
    free(m);
}

static size_t copy_out(const char *s, char *buf, size_t cap) {
    if (!s) s = "";
    size_t n = strlen(s);
    if (buf && cap > 0) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, s, k);
        buf[k] = 0;
    }
    return n;
}

size_t vcm_manifest_string(const vcm_manifest *m, int field, char *buf, size_t cap) {
    const Vcm__Manifest *x = m->msg;
    const Vcm__Provenance *p = x->provenance;
    const char *s = NULL;
    switch (field) {
    case VCM_STR_MODEL_KIND: s = x->model_kind; break;
    case VCM_STR_CONFIG_JSON: s = x->config_json; break;
    case VCM_STR_CONFIG_YAML: s = x->config_yaml; break;
    case VCM_STR_TEXT_CONFIG_JSON: s = x->text_config_json; break;
    case VCM_STR_PRESET: s = x->preset; break;
    case VCM_STR_SOURCE_NAME: s = p ? p->source_name : NULL; break;
    case VCM_STR_SOURCE_FORMAT: s = p ? p->source_format : NULL; break;
    case VCM_STR_CONVERTER: s = p ? p->converter : NULL; break;
    case VCM_STR_CONVERTER_VERSION: s = p ? p->converter_version : NULL; break;
    default: break;
    }
    return copy_out(s, buf, cap);
}

size_t vcm_manifest_bytes(const vcm_manifest *m, int field, uint8_t *buf, size_t cap) {
    const ProtobufCBinaryData *d = NULL;
    if (field == VCM_BYTES_VOCABULARY_ZSTD) d = &m->msg->vocabulary_zstd;
    else if (field == VCM_BYTES_SOURCE_SHA256 && m->msg->provenance) d = &m->msg->provenance->source_sha256;
    if (!d || !d->data) return 0;
    if (buf && cap > 0) memcpy(buf, d->data, d->len < cap ? d->len : cap);
    return d->len;
}

uint64_t vcm_manifest_u64(const vcm_manifest *m, int field) {
    const Vcm__Manifest *x = m->msg;
    const Vcm__Provenance *p = x->provenance;
    switch (field) {
    case VCM_U64_ALIGNMENT: return x->alignment;
    case VCM_U64_VOCABULARY_SIZE: return x->vocabulary_size;
    case VCM_U64_VOCABULARY_CRC32C: return x->vocabulary_crc32c;
    case VCM_U64_SOURCE_SIZE: return p ? p->source_size : 0;
    case VCM_U64_CREATED_UNIX: return p ? (uint64_t)p->created_unix : 0;
    case VCM_U64_HAS_PROVENANCE: return p ? 1 : 0;
    default: return 0;
    }
}

size_t vcm_manifest_option_count(const vcm_manifest *m) {
    return m->msg->provenance ? m->msg->provenance->n_options : 0;
}

size_t vcm_manifest_option_key(const vcm_manifest *m, size_t index, char *buf, size_t cap) {
    if (index >= vcm_manifest_option_count(m)) return copy_out(NULL, buf, cap);
    return copy_out(m->msg->provenance->options[index]->key, buf, cap);
}

size_t vcm_manifest_option_value(const vcm_manifest *m, size_t index, char *buf, size_t cap) {
    if (index >= vcm_manifest_option_count(m)) return copy_out(NULL, buf, cap);
    return copy_out(m->msg->provenance->options[index]->value, buf, cap);
}

size_t vcm_manifest_tensor_count(const vcm_manifest *m) { return m->msg->n_tensors; }

uint64_t vcm_manifest_tensor_u64(const vcm_manifest *m, size_t index, int field) {
    if (index >= m->msg->n_tensors) return 0;
    const Vcm__Tensor *t = m->msg->tensors[index];
    switch (field) {
    // Enums are returned as the raw 32-bit value (protobuf-c keeps unknown values).
    case VCM_TENSOR_DTYPE: return (uint64_t)(uint32_t)t->dtype;
    case VCM_TENSOR_COMPRESSION: return (uint64_t)(uint32_t)t->compression;
    case VCM_TENSOR_NDIM: return t->n_shape;
    case VCM_TENSOR_OFFSET: return t->offset;
    case VCM_TENSOR_SIZE: return t->size;
    case VCM_TENSOR_STORED_SIZE: return t->stored_size;
    case VCM_TENSOR_CRC32C: return t->crc32c;
    default: return 0;
    }
}

uint64_t vcm_manifest_tensor_dim(const vcm_manifest *m, size_t index, size_t dim) {
    if (index >= m->msg->n_tensors) return 0;
    const Vcm__Tensor *t = m->msg->tensors[index];
    return dim < t->n_shape ? t->shape[dim] : 0;
}

size_t vcm_manifest_tensor_name(const vcm_manifest *m, size_t index, char *buf, size_t cap) {
    if (index >= m->msg->n_tensors) return copy_out(NULL, buf, cap);
    return copy_out(m->msg->tensors[index]->name, buf, cap);
}
