"""PyTorch side of docs/performance.md's side-by-side: the same shapes as `vcrun bench`, random
weights, CPU, torch.inference_mode. Run by scripts/bench-pytorch/run (which makes the venv); not
part of the package and not run by CI.

Models (diffusers classes, random init, no download):
  unet3d  UNet3DConditionModel with the damo-vilab/text-to-video-ms-1.7b config values: the
          channels, heads (head dim 64), cross-attention width and layer counts of VideoCrafter2's
          UNet, plus 4-conv temporal conv layers after every resnet (VC2 has one (3,1,1) conv pair).
          Input [B, 4, T, H/8, W/8], context [B, 77, 1024]. The closest model to VC2 installable
          from PyPI; its FLOP count is printed next to ours in docs/performance.md.
  vae     AutoencoderKL with the SD 2.1 config; times .decode of one [1, 4, H/8, W/8] latent.
Prints one JSON line per timed call and a summary line with the median, the minimum, this
process's CPU time per call and its peak RSS.
"""
import argparse, json, resource, statistics, sys, time

import torch


def unet3d(args):
    from diffusers import UNet3DConditionModel
    m = UNet3DConditionModel(
        sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        norm_num_groups=32, cross_attention_dim=1024, attention_head_dim=64,
    ).eval()
    if args.dtype == "bf16":
        m = m.to(torch.bfloat16)
    dt = next(m.parameters()).dtype
    h, w = args.height // 8, args.width // 8
    x = torch.randn(args.batch, 4, args.frames, h, w, dtype=dt)
    ctx = torch.randn(args.batch, 77, 1024, dtype=dt)
    t = torch.full((args.batch,), 981, dtype=torch.long)
    params = sum(p.numel() for p in m.parameters())
    return (lambda: m(x, t, encoder_hidden_states=ctx).sample), params


def vae(args):
    from diffusers import AutoencoderKL
    m = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), sample_size=512,
    ).eval()
    if args.dtype == "bf16":
        m = m.to(torch.bfloat16)
    dt = next(m.parameters()).dtype
    z = torch.randn(1, 4, args.height // 8, args.width // 8, dtype=dt)
    params = sum(p.numel() for p in m.decoder.parameters()) + sum(p.numel() for p in m.post_quant_conv.parameters())
    return (lambda: m.decode(z).sample), params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["unet3d", "vae"])
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        call, params = {"unet3d": unet3d, "vae": vae}[args.model](args)
        for _ in range(args.warmup):
            call()
        times, cpus = [], []
        for i in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            call()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            times.append(dt); cpus.append(dc)
            print(json.dumps({"call": i + 1, "seconds": round(dt, 3), "cpu_seconds": round(dc, 3)}), flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "model": args.model, "dtype": args.dtype, "batch": args.batch, "frames": args.frames,
        "height": args.height, "width": args.width, "threads": args.threads, "params": params,
        "torch": torch.__version__, "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3), "cpu_per_call_s": round(statistics.median(cpus), 3),
        "peak_rss_mb": round(rss_mb),
    }))


if __name__ == "__main__":
    sys.exit(main())
