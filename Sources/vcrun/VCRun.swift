// vcrun: runs VideoCrafter2 on the CPU (text -> video), plus tools around it. All work happens in
// the VideoCrafter library; this target only parses arguments and displays progress.
import ArgumentParser
import VideoCrafter

@main
struct VCRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vcrun",
        abstract: "Generate videos with VideoCrafter2 on the CPU.",
        discussion: """
        Examples:
          vcrun sample --model vc2-q8.vcm --prompt "a black swan swims on the pond" --seed 123 -o swan.mp4
          vcrun tokenize "a black swan" --json
          vcrun bench --random vc2 --type q8
        """,
        version: VideoCrafterVersion.string,
        subcommands: CLICommands.vcrun)
}
