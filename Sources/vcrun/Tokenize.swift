import ArgumentParser
import Foundation
import VideoCrafter

/// `vcrun tokenize "PROMPT"`: the token ids VideoCrafter2's text encoder gets for a prompt.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Show the 77 token ids (and tokens) the text encoder receives for a prompt.",
        discussion: """
        The prompt is cleaned as open_clip does it (mojibake repair, HTML entities, whitespace, \
        lowercase), split into BPE tokens, framed by the start and end tokens and zero-padded to 77. \
        Prompts longer than 75 tokens are cut; the last kept token becomes the end token.

        Examples:
          vcrun tokenize "a black swan swims on the pond"
          vcrun tokenize "A Corgi at Sunset!!!" --json
        """)

    @Argument(help: "The prompt.")
    var prompt: String

    @Option(name: .long, help: ArgumentHelp("Read the vocabulary from this .vcm model instead of the bundled one.",
                                            valueName: "FILE.vcm"))
    var model: String?

    @Flag(name: .long, help: "Print JSON (prompt, cleaned, words, ids, tokens, full_count, truncated, context_length).")
    var json = false

    func run() throws {
        let result = try Tokenize.run(prompt: prompt, vocabulary: model.map { .model(path: $0) } ?? .bundled)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
            return
        }
        print("cleaned: \(result.cleaned)")
        let promptTokens = result.fullCount - 2
        print("tokens:  \(result.tokens.count) of \(result.contextLength) (start + \(promptTokens) + end)"
              + (result.truncated ? ", truncated: \(result.fullCount - result.contextLength) prompt tokens cut" : ""))
        let width = String(result.tokens.count - 1).count
        for (k, token) in result.tokens.enumerated() {
            print("  \(rightAligned(k, width))  \(rightAligned(Int(token.id), 5))  \(token.text)")
        }
        print("ids:")
        print(result.ids.map(String.init).joined(separator: " "))
    }

    private func rightAligned(_ value: Int, _ width: Int) -> String {
        let s = String(value)
        return String(repeating: " ", count: max(0, width - s.count)) + s
    }
}
