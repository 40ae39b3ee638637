/*
 * CVCMedia: narrow C wrappers over libavformat/libavcodec/libswscale (H.264 MP4) and libpng.
 *
 * Conventions:
 *  - Frames are tightly packed RGB8 (width * height * 3 bytes, rows top to bottom).
 *  - Functions that can fail take `char *err, size_t err_size` and write a NUL-terminated
 *    message there on failure. They return 0 (or a non-NULL handle) on success, a negative
 *    value (or NULL) on failure.
 *  - Metadata is passed as one buffer of NUL-terminated UTF-8 strings: key, value, key, value,
 *    ... (`count` pairs), so callers need no arrays of pointers.
 *  - Nothing here renames or fsyncs files: callers write to a temporary path and commit it.
 */
#ifndef CVCMEDIA_H
#define CVCMEDIA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/* MP4 (H.264, yuv420p) writer                                                             */

typedef struct vcmedia_mp4 vcmedia_mp4;

/*
 * Opens `path` for writing an MP4 with one H.264 (libx264) video stream, pixel format yuv420p,
 * BT.601 limited range, frame rate fps_num/fps_den, constant rate factor `crf` (0-51) and x264
 * `preset` (NULL: "medium"). yuv420p needs even dimensions: odd widths/heights are padded by
 * one column/row that repeats the last one. The moov atom is moved to the front (faststart)
 * so browsers can start playback before the whole file has arrived. Every packet gets a
 * duration of one frame, so the last frame is not dropped by an edit list.
 * `metadata` holds `metadata_count` key/value pairs written as container tags (the MP4 muxer
 * keeps the standard keys: title, comment, description, artist, ...).
 */
vcmedia_mp4 *vcmedia_mp4_open(const char *path, int width, int height, int fps_num, int fps_den,
                              int crf, const char *preset, const char *metadata, int metadata_count,
                              char *err, size_t err_size);

/* Encodes one frame of width * height * 3 bytes (the size given to vcmedia_mp4_open). */
int vcmedia_mp4_write_rgb(vcmedia_mp4 *mp4, const uint8_t *rgb, char *err, size_t err_size);

/* Flushes the encoder, writes the trailer, closes the file and frees the handle (also on
   failure: the handle is invalid afterwards). */
int vcmedia_mp4_close(vcmedia_mp4 *mp4, char *err, size_t err_size);

/* Frees the handle without finishing the file (after an error). NULL is ignored. */
void vcmedia_mp4_abort(vcmedia_mp4 *mp4);

/* Frames written so far. */
int64_t vcmedia_mp4_frame_count(const vcmedia_mp4 *mp4);

/* ---------------------------------------------------------------------------------------- */
/* Video probe / decoder (used by tests to check what was written)                         */

typedef struct vcmedia_probe_info {
    int frames;           /* frames decoded (every frame the demuxer presents) */
    int width, height;    /* coded picture size */
    int fps_num, fps_den; /* stream average frame rate */
    double duration;      /* container duration in seconds (0 if unknown) */
} vcmedia_probe_info;

/*
 * Decodes every frame of the first video stream of `path`. Writes the decoder's pixel format
 * name (e.g. "yuv420p") and codec name (e.g. "h264") into the given buffers. If `rgb_out` is
 * not NULL, frame number `rgb_frame` is converted to RGB8 (BT.601 limited range, as written)
 * into `rgb_out`, which must hold width * height * 3 bytes (`rgb_size`).
 */
int vcmedia_probe(const char *path, vcmedia_probe_info *info, char *pix_fmt, size_t pix_fmt_size,
                  char *codec, size_t codec_size, int rgb_frame, uint8_t *rgb_out, size_t rgb_size,
                  char *err, size_t err_size);

/* Reads container tag `key` into `value`. Returns 1 if found, 0 if not, negative on error. */
int vcmedia_probe_tag(const char *path, const char *key, char *value, size_t value_size,
                      char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------- */
/* PNG                                                                                     */

/*
 * Writes an 8-bit RGB PNG. Each metadata pair becomes a text chunk: tEXt when the value is
 * ASCII, iTXt (UTF-8) otherwise. Keys must be 1-79 printable ASCII characters.
 */
int vcmedia_png_write(const char *path, int width, int height, const uint8_t *rgb,
                      const char *metadata, int metadata_count, char *err, size_t err_size);

/*
 * Reads a PNG as 8-bit RGB. Always stores the size in *width / *height. If `rgb_out` is NULL
 * or `rgb_size` < width * height * 3, returns 1 without decoding (ask for the size first).
 * If `text_key` is not NULL, the value of that text chunk (tEXt/zTXt/iTXt) is copied into
 * `text_value` (empty if absent).
 */
int vcmedia_png_read(const char *path, int *width, int *height, uint8_t *rgb_out, size_t rgb_size,
                     const char *text_key, char *text_value, size_t text_value_size,
                     char *err, size_t err_size);

/* Library versions, for diagnostics ("libavcodec 59.37.100, libx264, libpng 1.6.39"). */
void vcmedia_versions(char *out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif /* CVCMEDIA_H */
