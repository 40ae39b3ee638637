import Foundation
import Testing
import VideoCrafter
import VCModels

@Suite struct TokenizeJobTests {
    @Test func plainPrompt() throws {
        let r = try Tokenize.run(prompt: "A black swan, swims!")
        #expect(r.cleaned == "a black swan, swims!")
        #expect(r.words == ["a", "black", "swan", ",", "swims", "!"])
        #expect(r.ids.count == 77 && r.contextLength == 77)
        #expect(r.tokens.map(\.id) == Array(r.ids.prefix(8)) && r.ids[8...].allSatisfy { $0 == 0 })
        #expect(r.tokens.map(\.text) == ["<start_of_text>", "a</w>", "black</w>", "swan</w>", ",</w>", "swims</w>",
                                         "!</w>", "<end_of_text>"])
        #expect(r.fullCount == 8 && !r.truncated)
    }

    @Test func longPromptIsTruncated() throws {
        let r = try Tokenize.run(prompt: Array(repeating: "swan", count: 80).joined(separator: " "))
        #expect(r.truncated && r.fullCount == 82)
        #expect(r.tokens.count == 77 && r.tokens.last?.id == 49407)
    }

    @Test func bytePiecesAreEscaped() throws {
        // "桜" (E6 A1 9C) on its own stays three byte symbols (open_clip: 162, 94, 506).
        let r = try Tokenize.run(prompt: "桜")
        #expect(r.tokens.map(\.id) == [49406, 162, 94, 506, 49407])
        #expect(r.tokens.map(\.text) == ["<start_of_text>", "\\xe6", "\\xa1", "\\x9c</w>", "<end_of_text>"])
        // Followed by "と" its last two bytes merge (open_clip: ..., 162, 43991, ...).
        let joined = try Tokenize.run(prompt: "桜と")
        #expect(joined.tokens[1].text == "\\xe6" && joined.tokens[2].id == 43991 && joined.tokens[2].text == "\\xa1\\x9c")
    }

    @Test func vocabularySources() throws {
        let r = try Tokenize.run(prompt: "abc", vocabulary: .mergesText("#\na b\nab c</w>"))
        #expect(Array(r.ids.prefix(4)) == [514, 513, 515, 0])
        #expect(throws: TokenizeError.self) { try Tokenize.run(prompt: "x", vocabulary: .model(path: "/nonexistent.vcm")) }
    }

    @Test func jsonKeys() throws {
        let data = try JSONEncoder().encode(try Tokenize.run(prompt: "it's"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["prompt", "cleaned", "words", "ids", "tokens", "full_count", "truncated", "context_length"])
    }
}
