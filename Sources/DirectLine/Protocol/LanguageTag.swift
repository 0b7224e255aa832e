/// BCP 47 language tags (RFC 5646), for the `locale` a conversation starts
/// with: the syntax of section 2.1 (well-formed), plus two of section 2.2.9's
/// validity rules that need no registry (no variant or extension singleton
/// twice). Whether a subtag is registered is not checked, so a new region
/// or language never needs a new library.
enum LanguageTag {
    /// Tags longer than this are refused: RFC 5646 asks for at least 35
    /// characters and no real locale comes near this.
    static let maxLength = 255

    /// The irregular grandfathered tags (RFC 5646 section 2.2.8), which the
    /// syntax alone does not produce; the regular ones it does.
    private static let irregular: Set<String> = [
        "en-gb-oed", "i-ami", "i-bnn", "i-default", "i-enochian", "i-hak", "i-klingon", "i-lux", "i-mingo",
        "i-navajo", "i-pwn", "i-tao", "i-tay", "i-tsu", "sgn-be-fr", "sgn-be-nl", "sgn-ch-de",
    ]

    /// Why `tag` is not a well-formed language tag, or nil when it is.
    static func problem(_ tag: String) -> String? {
        guard !tag.isEmpty else { return "is empty" }
        guard tag.utf8.count <= maxLength else { return "is longer than \(maxLength) characters" }
        guard tag.utf8.allSatisfy({ Validation.isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else {
            return "may hold only ASCII letters, digits and \"-\""
        }
        let lower = tag.lowercased()
        if irregular.contains(lower) { return nil }
        let subtags = lower.split(separator: "-", omittingEmptySubsequences: false).map { Array($0.utf8) }
        guard subtags.allSatisfy({ (1...8).contains($0.count) }) else {
            return "has an empty subtag or one longer than 8 characters"
        }
        return structureProblem(subtags)
    }

    private static func structureProblem(_ subtags: [[UInt8]]) -> String? {
        var index = 0
        func next(_ test: ([UInt8]) -> Bool) -> Bool {
            guard index < subtags.count, test(subtags[index]) else { return false }
            index += 1
            return true
        }
        if subtags[0] == [UInt8(ascii: "x")] { return privateUseProblem(subtags, from: 0) }
        // language: 2-3 letters with up to three 3-letter extlangs, or 4-8 letters.
        guard next({ allLetters($0) && $0.count != 1 }) else {
            return "must begin with a language subtag of 2 to 8 letters"
        }
        if subtags[0].count <= 3 {
            for _ in 0..<3 where next({ allLetters($0) && $0.count == 3 }) {}
        }
        _ = next { allLetters($0) && $0.count == 4 }                               // script
        _ = next { (allLetters($0) && $0.count == 2) || (allDigits($0) && $0.count == 3) } // region
        var variants: Set<[UInt8]> = []
        while next(isVariant) {
            guard variants.insert(subtags[index - 1]).inserted else { return "repeats a variant" }
        }
        var singletons: Set<UInt8> = []
        while index < subtags.count, subtags[index].count == 1, subtags[index] != [UInt8(ascii: "x")] {
            guard singletons.insert(subtags[index][0]).inserted else { return "repeats an extension" }
            index += 1
            var any = false
            while next({ (2...8).contains($0.count) }) { any = true }
            guard any else { return "has an extension without subtags" }
        }
        if index < subtags.count, subtags[index] == [UInt8(ascii: "x")] {
            return privateUseProblem(subtags, from: index)
        }
        return index == subtags.count ? nil : "has a subtag out of place"
    }

    private static func privateUseProblem(_ subtags: [[UInt8]], from start: Int) -> String? {
        subtags.count > start + 1 ? nil : "has a private use \"x\" without subtags"
    }

    private static func isVariant(_ subtag: [UInt8]) -> Bool {
        (5...8).contains(subtag.count) || (subtag.count == 4 && isDigit(subtag[0]))
    }

    private static func allLetters(_ subtag: [UInt8]) -> Bool { subtag.allSatisfy(isLetter) }
    private static func allDigits(_ subtag: [UInt8]) -> Bool { subtag.allSatisfy(isDigit) }
    private static func isLetter(_ byte: UInt8) -> Bool { (0x61...0x7A).contains(byte | 0x20) }
    private static func isDigit(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) }
}
