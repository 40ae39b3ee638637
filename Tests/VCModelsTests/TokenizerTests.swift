import Foundation
import Testing
import VCModels
import VCTensor
import VCTestSupport

/// One tokenizer for the suite (building the vocabulary takes a moment).
private let bundledTokenizer = Result { try CLIPTokenizer.bundled() }

private func padded(_ ids: [Int32]) -> [Int32] { ids + [Int32](repeating: 0, count: 77 - ids.count) }

@Suite struct TokenizerTests {
    @Test func goldenPrompts() throws {
        let tokenizer = try bundledTokenizer.get()
        let json = try Fixtures.goldenJSON()
        let prompts = try #require(json["prompts"] as? [[String: Any]])
        #expect(prompts.count == 13)
        let golden = try #require(try Fixtures.golden().tensor(named: "tokenizer.ids"))
        #expect(golden.shape == [13, 77] && golden.dtype == .i32)
        let expected = golden.floats().map { Int32($0) }
        for prompt in prompts {
            let index = try #require(prompt["index"] as? Int)
            let text = try #require(prompt["text"] as? String)
            let name = prompt["name"] as? String ?? "?"
            let row = Array(expected[(index * 77)..<((index + 1) * 77)])
            #expect(tokenizer.tokenize(text) == row, "prompt \(index) (\(name))")
            #expect(TextCleaning.clean(text).unicodeScalars.elementsEqual((prompt["cleaned"] as? String ?? "").unicodeScalars),
                    "cleaned text of prompt \(index) (\(name))")
            let count = try #require(prompt["n_tokens_with_sot_eot"] as? Int)
            #expect(tokenizer.encode(text).count + 2 == count, "token count of prompt \(index) (\(name))")
        }
    }

    /// Reference outputs of open_clip 2.22.0 + ftfy 6.3.1 for our own inputs
    /// (fixtures/tokenizer/gen_open_clip_cases.py): ftfy.fix_text, the cleaned text and the ids.
    @Test func openClipCases() throws {
        let tokenizer = try bundledTokenizer.get()
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizer/open_clip_cases.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try #require(json["cases"] as? [[String: Any]])
        #expect(cases.count > 300)
        var failures = 0
        for (k, c) in cases.enumerated() {
            let text = try #require(c["text"] as? String)
            let fixed = try #require(c["fixed"] as? String)
            let cleaned = try #require(c["cleaned"] as? String)
            let ids = try #require(c["ids"] as? [Int]).map(Int32.init)
            // Compare code points: Swift's String == is canonical equivalence, Python's is not.
            let okFixed = TextCleaning.fixText(text).unicodeScalars.elementsEqual(fixed.unicodeScalars)
            let okCleaned = TextCleaning.clean(text).unicodeScalars.elementsEqual(cleaned.unicodeScalars)
            let okIds = tokenizer.tokenize(text) == ids
            if !(okFixed && okCleaned && okIds) { failures += 1 }
            #expect(okFixed, "case \(k): fix_text of \(text.debugDescription)")
            #expect(okCleaned, "case \(k): cleaned \(text.debugDescription)")
            #expect(okIds, "case \(k): ids of \(text.debugDescription)")
        }
        #expect(failures == 0)
    }

    @Test func handCheckedIds() throws {
        let tokenizer = try bundledTokenizer.get()
        #expect(tokenizer.vocabularySize == 49408)
        #expect(tokenizer.startOfText == 49406 && tokenizer.endOfText == 49407)
        #expect(tokenizer.tokenize("") == padded([49406, 49407]))
        #expect(tokenizer.tokenize("a black swan swims on the pond")
                == padded([49406, 320, 1449, 12530, 46798, 525, 518, 10750, 49407]))
        // Cleanup makes these the same prompt.
        #expect(tokenizer.tokenize("  A   BLACK\tSwan swims\non the POND ") == tokenizer.tokenize("a black swan swims on the pond"))
        #expect(tokenizer.symbol(320) == "a</w>")
        #expect(tokenizer.symbol(1449) == "black</w>")
        #expect(tokenizer.symbol(49406) == "<start_of_text>")
        #expect(tokenizer.symbol(0) == "!" && tokenizer.symbol(256) == "!</w>")
        #expect(tokenizer.symbol(49408) == nil && tokenizer.symbol(-1) == nil)
        #expect(tokenizer.decode([320, 1449, 12530]) == "a black swan ")
        // Special tokens written in the prompt are the special ids.
        #expect(tokenizer.encode("<end_of_text>") == [49407])
        #expect(tokenizer.encode("<START_OF_TEXT>") == [49406]) // lowercased first
    }

    @Test func truncationKeepsEndToken() throws {
        let tokenizer = try bundledTokenizer.get()
        let text = Array(repeating: "swan", count: 100).joined(separator: " ")
        let body = tokenizer.encode(text)
        #expect(body.count == 100)
        let ids = tokenizer.tokenize(text)
        #expect(ids.count == 77)
        #expect(ids[0] == 49406 && ids[76] == 49407)
        #expect(Array(ids[1..<76]) == Array(body.prefix(75)))
        // Exactly 75 words fit without cutting; 76 lose the last one.
        let fits = Array(repeating: "swan", count: 75).joined(separator: " ")
        #expect(tokenizer.tokenize(fits) == [49406] + Array(body.prefix(75)) + [49407])
        let over = Array(repeating: "swan", count: 76).joined(separator: " ")
        #expect(tokenizer.tokenize(over) == [49406] + Array(body.prefix(75)) + [49407])
    }

    @Test func preTokenisation() throws {
        let tokenizer = try bundledTokenizer.get()
        #expect(tokenizer.words("it's a dog's life, they're here, we've won, I'm ok, you'll see, he'd go")
                == ["it", "'s", "a", "dog", "'s", "life", ",", "they", "'re", "here", ",", "we", "'ve", "won", ",",
                    "i", "'m", "ok", ",", "you", "'ll", "see", ",", "he", "'d", "go"])
        // Digits one at a time; symbol runs stay together; letters of any script.
        #expect(tokenizer.words("4k 60fps, 2024!!") == ["4", "k", "6", "0", "fps", ",", "2", "0", "2", "4", "!!"])
        #expect(tokenizer.words("''s 'x #a@b") == ["''", "s", "'", "x", "#", "a", "@", "b"])
        #expect(tokenizer.words("日本の桜 ½²") == ["日本の桜", "½", "²"])
        // Case-insensitive contraction: long s (U+017F) matches "s".
        #expect(tokenizer.words("'\u{17F}") == ["'\u{17F}"])
        // U+0345 matches none of the alternatives under IGNORECASE and is dropped.
        #expect(tokenizer.words("x\u{345}y !\u{345}!") == ["x", "y", "!", "!"])
    }

    @Test func textCleanup() {
        // HTML: ftfy's unescape, then html.unescape twice.
        #expect(TextCleaning.clean("fish &amp; chips &lt;b&gt;") == "fish & chips <b>")
        #expect(TextCleaning.clean("&amp;amp;amp;") == "&")
        #expect(TextCleaning.htmlUnescape("&notit; &amp &#128; &#x41;&#0;&#1;x") == "\u{AC}it; & \u{20AC} A\u{FFFD}x")
        #expect(TextCleaning.htmlUnescape("&#55296; &#1114112; &#13; &bogus; &;") == "\u{FFFD} \u{FFFD} \r &bogus; &;")
        #expect(TextCleaning.fixText("P&EACUTE;REZ &SZLIG; &nTILDE;") == "PÉREZ SS &nTILDE;")
        // With a "<" in the line ftfy leaves entities alone; open_clip's html.unescape still decodes.
        #expect(TextCleaning.fixText("a < b &amp; c") == "a < b &amp; c")
        #expect(TextCleaning.clean("a < b &amp; c") == "a < b & c")
        // Whitespace: runs of \s -> one space, strip.
        #expect(TextCleaning.clean("\t lots \u{3000}of\u{A0}\u{2003}space \n") == "lots of space")
        // Lowercase as Python: final sigma, dotted capital I.
        #expect(TextCleaning.clean("ΟΔΟΣ Σ ΟΣ.") == "οδος σ ος.")
        #expect(TextCleaning.clean("İ").unicodeScalars.map(\.value) == [0x69, 0x307])
    }

    @Test func ftfyFixes() {
        #expect(TextCleaning.fixText("The cafÃ© is open") == "The café is open")
        #expect(TextCleaning.fixText("âœ” No problems") == "✔ No problems")
        #expect(TextCleaning.fixText("voilÃ le travail") == "voilà le travail")
        #expect(TextCleaning.fixText("Ð¿Ñ€Ð¸Ð²ÐµÑ‚") == "привет")
        #expect(TextCleaning.fixText("ðŸ˜€ emoji") == "😀 emoji")
        #expect(TextCleaning.fixText("Itâ€™s") == "It's")
        #expect(TextCleaning.fixText("café crème") == "café crème") // not mojibake: unchanged
        #expect(TextCleaning.fixText("\u{FB02}uﬃe\u{FB06}") == "fluffiest")
        #expect(TextCleaning.fixText("ＬＯＵＤ\u{3000}ＮＯＩＳＥＳ") == "LOUD NOISES")
        #expect(TextCleaning.fixText("\u{201C}here\u{2019}s a test\u{201D}") == "\"here's a test\"")
        #expect(TextCleaning.fixText("\u{1B}[36;44mblue\u{1B}[0m") == "blue")
        #expect(TextCleaning.fixText("a\r\nb\rc\u{2028}d") == "a\nb\nc\nd")
        #expect(TextCleaning.fixText("a\u{0}b\u{7F}c\u{FEFF}d") == "abcd")
        #expect(TextCleaning.fixText("e\u{301}").unicodeScalars.map(\.value) == [0xE9]) // NFC
        #expect(TextCleaning.fixText("C1 \u{80}\u{93}") == "C1 €\"")
    }

    @Test func vocabularyFromMergesText() throws {
        // Header, then merges "a b" (rank 0) and "ab c</w>" (rank 1): ids 512 and 513, SOT 514, EOT 515.
        // (Expected values checked against open_clip's SimpleTokenizer on the same merges file.)
        let tokenizer = try CLIPTokenizer(mergesText: "#version: 0.2\na b\nab c</w>")
        #expect(tokenizer.vocabularySize == 516)
        #expect(tokenizer.startOfText == 514 && tokenizer.endOfText == 515)
        #expect(tokenizer.symbol(512) == "ab" && tokenizer.symbol(513) == "abc</w>")
        #expect(tokenizer.tokenize("abc") == padded([514, 513, 515]))
        // "abd": a b -> ab, and no merge joins (ab, d</w>). "d</w>" is 256 + the index of "d" in
        // the byte order, which starts with the printable ASCII bytes from "!" (0x21).
        #expect(tokenizer.tokenize("abd") == padded([514, 512, 256 + 0x64 - 0x21, 515]))
        // Python splits on "\n", so a final newline adds an empty "merge" (an empty vocabulary
        // string) and moves the special tokens up by one.
        let trailing = try CLIPTokenizer(mergesText: "#version: 0.2\na b\nab c</w>\n")
        #expect(trailing.vocabularySize == 517 && trailing.startOfText == 515 && trailing.endOfText == 516)
        // Lines split on "\n" only; parts on any Python whitespace (CR, tab, U+3000 here).
        let crlf = try CLIPTokenizer(mergesText: "#v\r\na\u{3000}b\r\nab\tc</w>")
        #expect(crlf.vocabularySize == 516 && crlf.encode("abc") == [513])
        #expect(throws: TokenizerError.badContextLength(0)) { try CLIPTokenizer(mergesText: "", contextLength: 0) }
        // A short context still ends with EOT. "ab" is a, b</w>: the merge (a, b) does not apply.
        let short = try CLIPTokenizer(mergesText: "#\na b", contextLength: 3)
        #expect(short.encode("ab ab ab") == [64, 321, 64, 321, 64, 321])
        #expect(short.tokenize("ab ab ab") == [short.startOfText, 64, short.endOfText])
    }
}
