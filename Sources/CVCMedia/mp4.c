/*
 * H.264/MP4 writer and a small decoder/prober over FFmpeg (libavformat, libavcodec,
 * libswscale, libavutil; FFmpeg >= 5.0 API).
 *
 * The encode loop follows FFmpeg's doc/examples/mux.c: output context -> encoder context ->
 * stream parameters -> avio_open -> header; per frame RGB24 -> sws_scale -> yuv420p ->
 * send_frame / receive_packet -> rescale -> interleaved write; flush with a NULL frame; trailer.
 * Output conventions follow the official VideoCrafter save_videos (torchvision write_video:
 * libx264, yuv420p, crf 10 in the CLI): see shared research formats-lora-sdcpp.md section 8.
 */
#include "CVCMedia.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/dict.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <png.h>
#include <libswscale/swscale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void vcm_set_error(char *err, size_t err_size, const char *fmt, ...) {
    if (!err || err_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static void set_av_error(char *err, size_t err_size, const char *what, int code) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
    av_strerror(code, buf, sizeof buf);
    vcm_set_error(err, err_size, "%s: %s", what, buf);
}

struct vcmedia_mp4 {
    AVFormatContext *fmt;
    AVCodecContext *ctx;
    AVStream *stream;
    AVFrame *rgb;
    AVFrame *yuv;
    AVPacket *pkt;
    struct SwsContext *sws;
    int src_w, src_h;   /* frames handed in */
    int enc_w, enc_h;   /* even sizes encoded */
    int64_t next_pts;
    int io_open;
    int header_written;
};

static void mp4_free(vcmedia_mp4 *m) {
    if (!m) return;
    if (m->sws) sws_freeContext(m->sws);
    av_frame_free(&m->rgb);
    av_frame_free(&m->yuv);
    av_packet_free(&m->pkt);
    avcodec_free_context(&m->ctx);
    if (m->fmt) {
        if (m->io_open) avio_closep(&m->fmt->pb);
        avformat_free_context(m->fmt);
    }
    av_free(m);
}

/* Sends `frame` (NULL = flush) and writes every packet the encoder returns. */
static int encode_and_write(vcmedia_mp4 *m, AVFrame *frame, char *err, size_t err_size) {
    int ret = avcodec_send_frame(m->ctx, frame);
    if (ret < 0) {
        set_av_error(err, err_size, frame ? "avcodec_send_frame" : "flushing the encoder", ret);
        return -1;
    }
    for (;;) {
        ret = avcodec_receive_packet(m->ctx, m->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
        if (ret < 0) {
            set_av_error(err, err_size, "avcodec_receive_packet", ret);
            return -1;
        }
        /* libx264 leaves duration 0; the mp4 muxer would then write an edit list that drops the
           last frame (feasibility.md pitfall 5). One frame in codec time base. */
        if (m->pkt->duration == 0) m->pkt->duration = 1;
        av_packet_rescale_ts(m->pkt, m->ctx->time_base, m->stream->time_base);
        m->pkt->stream_index = m->stream->index;
        ret = av_interleaved_write_frame(m->fmt, m->pkt);   /* takes the packet's reference */
        if (ret < 0) {
            set_av_error(err, err_size, "writing a packet", ret);
            return -1;
        }
    }
}

vcmedia_mp4 *vcmedia_mp4_open(const char *path, int width, int height, int fps_num, int fps_den,
                              int crf, const char *preset, const char *metadata, int metadata_count,
                              char *err, size_t err_size) {
    // libx264 and the muxer print statistics at info level; errors reach the caller through
    // `err`, so only FFmpeg's own errors stay on stderr.
    av_log_set_level(AV_LOG_ERROR);
    if (!path || width <= 0 || height <= 0 || width > 16384 || height > 16384) {
        vcm_set_error(err, err_size, "invalid video size %dx%d (1...16384)", width, height);
        return NULL;
    }
    if (fps_num <= 0 || fps_den <= 0) {
        vcm_set_error(err, err_size, "invalid frame rate %d/%d", fps_num, fps_den);
        return NULL;
    }
    if (crf < 0 || crf > 51) {
        vcm_set_error(err, err_size, "crf %d outside 0...51", crf);
        return NULL;
    }
    vcmedia_mp4 *m = av_mallocz(sizeof *m);
    if (!m) {
        vcm_set_error(err, err_size, "out of memory");
        return NULL;
    }
    m->src_w = width;
    m->src_h = height;
    m->enc_w = width + (width & 1);
    m->enc_h = height + (height & 1);
    int ret;

    ret = avformat_alloc_output_context2(&m->fmt, NULL, "mp4", path);
    if (ret < 0 || !m->fmt) {
        set_av_error(err, err_size, "creating the MP4 muxer", ret < 0 ? ret : AVERROR(ENOMEM));
        goto fail;
    }
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
    if (!codec) {
        vcm_set_error(err, err_size, "no H.264 encoder in this FFmpeg build (libx264 missing)");
        goto fail;
    }
    m->stream = avformat_new_stream(m->fmt, NULL);
    m->ctx = avcodec_alloc_context3(codec);
    m->pkt = av_packet_alloc();
    if (!m->stream || !m->ctx || !m->pkt) {
        vcm_set_error(err, err_size, "out of memory");
        goto fail;
    }
    AVCodecContext *c = m->ctx;
    c->width = m->enc_w;
    c->height = m->enc_h;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){fps_den, fps_num};
    c->framerate = (AVRational){fps_num, fps_den};
    c->sample_aspect_ratio = (AVRational){1, 1};
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_SMPTE170M;      /* what swscale's default RGB->YUV matrix is */
    c->color_primaries = AVCOL_PRI_SMPTE170M;
    c->color_trc = AVCOL_TRC_SMPTE170M;
    if (m->fmt->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    char crf_text[16];
    snprintf(crf_text, sizeof crf_text, "%d", crf);
    /* Private options exist only on libx264; another H.264 encoder ignores them. */
    av_opt_set(c->priv_data, "crf", crf_text, 0);
    av_opt_set(c->priv_data, "preset", preset && *preset ? preset : "medium", 0);
    ret = avcodec_open2(c, codec, NULL);
    if (ret < 0) {
        set_av_error(err, err_size, "opening the H.264 encoder", ret);
        goto fail;
    }
    ret = avcodec_parameters_from_context(m->stream->codecpar, c);
    if (ret < 0) {
        set_av_error(err, err_size, "copying encoder parameters", ret);
        goto fail;
    }
    m->stream->time_base = c->time_base;
    m->stream->avg_frame_rate = c->framerate;
    m->stream->r_frame_rate = c->framerate;

    const char *p = metadata;
    for (int i = 0; p && i < metadata_count; i++) {
        const char *key = p;
        const char *value = key + strlen(key) + 1;
        p = value + strlen(value) + 1;
        if (av_dict_set(&m->fmt->metadata, key, value, 0) < 0) {
            vcm_set_error(err, err_size, "out of memory (metadata)");
            goto fail;
        }
    }

    ret = avio_open(&m->fmt->pb, path, AVIO_FLAG_WRITE);
    if (ret < 0) {
        set_av_error(err, err_size, "opening the output file", ret);
        goto fail;
    }
    m->io_open = 1;
    AVDictionary *mux_opts = NULL;
    av_dict_set(&mux_opts, "movflags", "+faststart", 0);
    ret = avformat_write_header(m->fmt, &mux_opts);
    av_dict_free(&mux_opts);
    if (ret < 0) {
        set_av_error(err, err_size, "writing the MP4 header", ret);
        goto fail;
    }
    m->header_written = 1;

    m->rgb = av_frame_alloc();
    m->yuv = av_frame_alloc();
    if (!m->rgb || !m->yuv) {
        vcm_set_error(err, err_size, "out of memory");
        goto fail;
    }
    m->rgb->format = AV_PIX_FMT_RGB24;
    m->rgb->width = m->enc_w;
    m->rgb->height = m->enc_h;
    m->yuv->format = AV_PIX_FMT_YUV420P;
    m->yuv->width = m->enc_w;
    m->yuv->height = m->enc_h;
    if ((ret = av_frame_get_buffer(m->rgb, 0)) < 0 || (ret = av_frame_get_buffer(m->yuv, 0)) < 0) {
        set_av_error(err, err_size, "allocating frames", ret);
        goto fail;
    }
    m->sws = sws_getContext(m->enc_w, m->enc_h, AV_PIX_FMT_RGB24, m->enc_w, m->enc_h, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!m->sws) {
        vcm_set_error(err, err_size, "creating the RGB -> yuv420p converter");
        goto fail;
    }
    return m;
fail:
    mp4_free(m);
    return NULL;
}

int vcmedia_mp4_write_rgb(vcmedia_mp4 *m, const uint8_t *rgb, char *err, size_t err_size) {
    if (!m || !rgb) {
        vcm_set_error(err, err_size, "no writer or no frame");
        return -1;
    }
    int ret = av_frame_make_writable(m->rgb);
    if (ret >= 0) ret = av_frame_make_writable(m->yuv);
    if (ret < 0) {
        set_av_error(err, err_size, "making frames writable", ret);
        return -1;
    }
    /* Copy rows; an odd size is padded by repeating the last column / row. */
    const size_t src_stride = (size_t)m->src_w * 3;
    for (int y = 0; y < m->enc_h; y++) {
        const uint8_t *src = rgb + (size_t)(y < m->src_h ? y : m->src_h - 1) * src_stride;
        uint8_t *dst = m->rgb->data[0] + (size_t)y * (size_t)m->rgb->linesize[0];
        memcpy(dst, src, src_stride);
        if (m->enc_w != m->src_w) memcpy(dst + src_stride, src + src_stride - 3, 3);
    }
    sws_scale(m->sws, (const uint8_t *const *)m->rgb->data, m->rgb->linesize, 0, m->enc_h,
              m->yuv->data, m->yuv->linesize);
    m->yuv->pts = m->next_pts++;
    return encode_and_write(m, m->yuv, err, err_size);
}

int64_t vcmedia_mp4_frame_count(const vcmedia_mp4 *m) { return m ? m->next_pts : 0; }

int vcmedia_mp4_close(vcmedia_mp4 *m, char *err, size_t err_size) {
    if (!m) {
        vcm_set_error(err, err_size, "no writer");
        return -1;
    }
    int rc = encode_and_write(m, NULL, err, err_size);
    if (rc == 0) {
        int ret = av_write_trailer(m->fmt);
        if (ret < 0) {
            set_av_error(err, err_size, "writing the MP4 trailer", ret);
            rc = -1;
        }
    }
    if (rc == 0 && m->io_open) {
        int ret = avio_closep(&m->fmt->pb);
        m->io_open = 0;
        if (ret < 0) {
            set_av_error(err, err_size, "closing the output file", ret);
            rc = -1;
        }
    }
    mp4_free(m);
    return rc;
}

void vcmedia_mp4_abort(vcmedia_mp4 *m) { mp4_free(m); }

/* ---------------------------------------------------------------------------------------- */

static void copy_string(char *dst, size_t size, const char *src) {
    if (!dst || size == 0) return;
    snprintf(dst, size, "%s", src ? src : "");
}

static int convert_to_rgb(const AVFrame *f, uint8_t *out, size_t out_size, char *err, size_t err_size) {
    const size_t need = (size_t)f->width * (size_t)f->height * 3;
    if (out_size < need) {
        vcm_set_error(err, err_size, "RGB buffer of %zu bytes, frame needs %zu", out_size, need);
        return -1;
    }
    struct SwsContext *sws = sws_getContext(f->width, f->height, f->format, f->width, f->height,
                                            AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                                            NULL, NULL, NULL);
    if (!sws) {
        vcm_set_error(err, err_size, "creating the frame -> RGB converter");
        return -1;
    }
    uint8_t *dst[4] = {out, NULL, NULL, NULL};
    int dst_stride[4] = {f->width * 3, 0, 0, 0};
    sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_stride);
    sws_freeContext(sws);
    return 0;
}

int vcmedia_probe(const char *path, vcmedia_probe_info *info, char *pix_fmt, size_t pix_fmt_size,
                  char *codec_name, size_t codec_size, int rgb_frame, uint8_t *rgb_out, size_t rgb_size,
                  char *err, size_t err_size) {
    if (!path || !info) {
        vcm_set_error(err, err_size, "no path or no info");
        return -1;
    }
    memset(info, 0, sizeof *info);
    AVFormatContext *fmt = NULL;
    AVCodecContext *ctx = NULL;
    AVPacket *pkt = NULL;
    AVFrame *frame = NULL;
    int rc = -1, ret;
    int rgb_done = rgb_out == NULL;

    if ((ret = avformat_open_input(&fmt, path, NULL, NULL)) < 0) {
        set_av_error(err, err_size, "opening the video", ret);
        goto done;
    }
    if ((ret = avformat_find_stream_info(fmt, NULL)) < 0) {
        set_av_error(err, err_size, "reading stream info", ret);
        goto done;
    }
    const AVCodec *dec = NULL;
    int si = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &dec, 0);
    if (si < 0 || !dec) {
        set_av_error(err, err_size, "finding a video stream", si < 0 ? si : AVERROR_DECODER_NOT_FOUND);
        goto done;
    }
    AVStream *st = fmt->streams[si];
    ctx = avcodec_alloc_context3(dec);
    pkt = av_packet_alloc();
    frame = av_frame_alloc();
    if (!ctx || !pkt || !frame) {
        vcm_set_error(err, err_size, "out of memory");
        goto done;
    }
    if ((ret = avcodec_parameters_to_context(ctx, st->codecpar)) < 0 || (ret = avcodec_open2(ctx, dec, NULL)) < 0) {
        set_av_error(err, err_size, "opening the decoder", ret);
        goto done;
    }
    info->width = st->codecpar->width;
    info->height = st->codecpar->height;
    info->fps_num = st->avg_frame_rate.num;
    info->fps_den = st->avg_frame_rate.den;
    info->duration = fmt->duration > 0 ? (double)fmt->duration / AV_TIME_BASE : 0;
    copy_string(codec_name, codec_size, dec->name);

    int flushing = 0;
    for (;;) {
        if (!flushing) {
            ret = av_read_frame(fmt, pkt);
            if (ret == AVERROR_EOF) {
                flushing = 1;
                ret = avcodec_send_packet(ctx, NULL);
            } else if (ret < 0) {
                set_av_error(err, err_size, "reading a packet", ret);
                goto done;
            } else if (pkt->stream_index != si) {
                av_packet_unref(pkt);
                continue;
            } else {
                ret = avcodec_send_packet(ctx, pkt);
                av_packet_unref(pkt);
            }
            if (ret < 0 && ret != AVERROR(EAGAIN)) {
                set_av_error(err, err_size, "decoding", ret);
                goto done;
            }
        }
        for (;;) {
            ret = avcodec_receive_frame(ctx, frame);
            if (ret == AVERROR(EAGAIN)) break;
            if (ret == AVERROR_EOF) {
                rc = 0;
                goto finish;
            }
            if (ret < 0) {
                set_av_error(err, err_size, "decoding a frame", ret);
                goto done;
            }
            if (info->frames == 0) copy_string(pix_fmt, pix_fmt_size, av_get_pix_fmt_name(frame->format));
            if (!rgb_done && info->frames == rgb_frame) {
                if (convert_to_rgb(frame, rgb_out, rgb_size, err, err_size) < 0) goto done;
                rgb_done = 1;
            }
            info->frames++;
            av_frame_unref(frame);
        }
    }
finish:
    if (!rgb_done) {
        vcm_set_error(err, err_size, "frame %d requested, the video has %d", rgb_frame, info->frames);
        rc = -1;
    }
done:
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&ctx);
    avformat_close_input(&fmt);
    return rc;
}

int vcmedia_probe_tag(const char *path, const char *key, char *value, size_t value_size,
                      char *err, size_t err_size) {
    AVFormatContext *fmt = NULL;
    int ret = avformat_open_input(&fmt, path, NULL, NULL);
    if (ret < 0) {
        set_av_error(err, err_size, "opening the video", ret);
        return -1;
    }
    AVDictionaryEntry *e = av_dict_get(fmt->metadata, key, NULL, 0);
    copy_string(value, value_size, e ? e->value : "");
    avformat_close_input(&fmt);
    return e ? 1 : 0;
}

void vcmedia_versions(char *out, size_t out_size) {
    const AVCodec *x264 = avcodec_find_encoder_by_name("libx264");
    unsigned v = avcodec_version();
    vcm_set_error(out, out_size, "libavcodec %u.%u.%u, libavformat %u.%u.%u, H.264 encoder %s, libpng %s",
                  v >> 16, (v >> 8) & 0xff, v & 0xff, avformat_version() >> 16, (avformat_version() >> 8) & 0xff,
                  avformat_version() & 0xff, x264 ? x264->name : "none", png_get_libpng_ver(NULL));
}
