/*
 * PNG writer/reader over libpng's classic API (text chunks need it; the simplified API has no
 * text support). libpng reports errors by longjmp to the setjmp point set here, which is fine
 * in C (Swift cannot call setjmp, hence this wrapper).
 */
#include "CVCMedia.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    char *err;
    size_t err_size;
} png_err_ctx;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err_ctx *e = png_get_error_ptr(png);
    if (e) vcm_set_error(e->err, e->err_size, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static int is_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

static int valid_keyword(const char *k) {
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e) return 0;
    return 1;
}

int vcmedia_png_write(const char *path, int width, int height, const uint8_t *rgb,
                      const char *metadata, int metadata_count, char *err, size_t err_size) {
    if (!path || !rgb || width <= 0 || height <= 0 || width > 1000000 || height > 1000000) {
        vcm_set_error(err, err_size, "invalid PNG size %dx%d", width, height);
        return -1;
    }
    if (metadata_count < 0 || metadata_count > 4096) {
        vcm_set_error(err, err_size, "invalid metadata count %d", metadata_count);
        return -1;
    }
    png_text *texts = metadata_count ? calloc((size_t)metadata_count, sizeof(png_text)) : NULL;
    if (metadata_count && !texts) {
        vcm_set_error(err, err_size, "out of memory");
        return -1;
    }
    const char *p = metadata;
    for (int i = 0; i < metadata_count; i++) {
        const char *key = p;
        const char *value = key + strlen(key) + 1;
        p = value + strlen(value) + 1;
        if (!valid_keyword(key)) {
            vcm_set_error(err, err_size, "PNG text key '%s' must be 1-79 printable ASCII characters", key);
            free(texts);
            return -1;
        }
        texts[i].compression = is_ascii(value) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        texts[i].key = (png_charp)key;
        texts[i].text = (png_charp)value;
        texts[i].text_length = strlen(value);
        texts[i].lang = NULL;
        texts[i].lang_key = NULL;
    }

    FILE *fp = fopen(path, "wb");
    if (!fp) {
        vcm_set_error(err, err_size, "cannot create %s", path);
        free(texts);
        return -1;
    }
    png_err_ctx ectx = {err, err_size};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ectx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        vcm_set_error(err, err_size, "out of memory (libpng)");
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        free(texts);
        return -1;
    }
    volatile int rc = -1;
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, fp);
        png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        if (metadata_count) png_set_text(png, info, texts, metadata_count);
        png_write_info(png, info);
        const size_t stride = (size_t)width * 3;
        for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * stride));
        png_write_end(png, info);
        rc = 0;
    }
    png_destroy_write_struct(&png, &info);
    if (fclose(fp) != 0 && rc == 0) {
        vcm_set_error(err, err_size, "error closing %s", path);
        rc = -1;
    }
    free(texts);
    return rc;
}

int vcmedia_png_read(const char *path, int *width, int *height, uint8_t *rgb_out, size_t rgb_size,
                     const char *text_key, char *text_value, size_t text_value_size,
                     char *err, size_t err_size) {
    if (!path || !width || !height) {
        vcm_set_error(err, err_size, "no path or size outputs");
        return -1;
    }
    if (text_value && text_value_size) text_value[0] = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        vcm_set_error(err, err_size, "cannot open %s", path);
        return -1;
    }
    png_err_ctx ectx = {err, err_size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ectx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        vcm_set_error(err, err_size, "out of memory (libpng)");
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        return -1;
    }
    volatile int rc = -1;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, fp);
        png_read_info(png, info);
        png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
        *width = (int)w;
        *height = (int)h;
        const size_t need = (size_t)w * h * 3;
        if (!rgb_out || rgb_size < need) {
            rc = 1;
        } else {
            int color = png_get_color_type(png, info);
            png_set_expand(png);
            png_set_strip_16(png);
            if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
            if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
            png_set_interlace_handling(png);
            png_read_update_info(png, info);
            if (png_get_rowbytes(png, info) != (size_t)w * 3) png_error(png, "unexpected row size after transforms");
            rows = malloc(sizeof(png_bytep) * (h ? h : 1));
            if (!rows) png_error(png, "out of memory");
            for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb_out + (size_t)y * w * 3;
            png_read_image(png, rows);
            png_read_end(png, info);
            if (text_key && text_value && text_value_size) {
                png_textp texts = NULL;
                int n = png_get_text(png, info, &texts, NULL);
                for (int i = 0; i < n; i++) {
                    if (strcmp(texts[i].key, text_key) == 0) {
                        snprintf(text_value, text_value_size, "%s", texts[i].text ? texts[i].text : "");
                        break;
                    }
                }
            }
            rc = 0;
        }
    }
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return rc;
}
