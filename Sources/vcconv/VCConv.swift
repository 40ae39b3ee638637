// vcconv: converts VideoCrafter / Stable Diffusion weights to the native .vcm format, merges LoRA
// deltas, inspects and exports model files. All work happens in the VideoCrafter library; this
// target only parses arguments and prints.
import ArgumentParser
import VideoCrafter

@main
struct VCConv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vcconv",
        abstract: "Convert, inspect and merge VideoCrafter2 / SD 2.1 model files.",
        discussion: """
        Examples:
          vcconv import model.ckpt --config inference_t2v_512_v2.0.yaml -o vc2.vcm --type q8
          vcconv inspect vc2.vcm --stats
          vcconv export vc2.vcm -o vc2.safetensors --dtype f16
          vcconv merge-lora vc2-f16.vcm style.safetensors:0.8 -o vc2-style.vcm
        """,
        version: VideoCrafterVersion.string,
        subcommands: CLICommands.vcconv)
}
