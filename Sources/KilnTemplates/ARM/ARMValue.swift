import Foundation

/// ARM strings are .NET strings: lengths, indexes and splits count UTF-16 code units (`length('👍')` is 2, and
/// `split('a\r\nb', '\n')` splits inside the line ending), where Swift counts characters.
struct UTF16Text {
    var units: [UInt16]
    init(_ s: String) { units = Array(s.utf16) }
    init(units: some Collection<UInt16>) { self.units = Array(units) }
    var count: Int { units.count }
    var string: String { String(decoding: units, as: UTF16.self) }
    subscript(_ r: Range<Int>) -> String { String(decoding: units[r], as: UTF16.self) }

    /// Position of `needle`, or -1.
    func index(of needle: UTF16Text, last: Bool) -> Int {
        let h = units, n = needle.units
        guard n.count <= h.count else { return -1 }
        if n.isEmpty { return last ? max(h.count - 1, 0) : 0 }
        let starts = 0...(h.count - n.count)
        for s in last ? Array(starts.reversed()) : Array(starts) where h[s] == n[0] && Array(h[s..<(s + n.count)]) == n { return s }
        return -1
    }
}

/// The evaluator's view of a value: `SourceNode` (so a result keeps the line it came from), with the
/// constructors, conversions and comparisons ARM's functions are defined by.
extension SourceNode {
    static func string(_ s: String) -> SourceNode { SourceNode(.string(s)) }
    static func int(_ i: Int) -> SourceNode { SourceNode(.number(NumberLiteral(String(i)))) }
    static func bool(_ b: Bool) -> SourceNode { SourceNode(.bool(b)) }
    static let null = SourceNode(.null)
    static func array(_ a: [SourceNode]) -> SourceNode { SourceNode(.array(a)) }
    static func object(_ pairs: [(String, SourceNode)]) -> SourceNode {
        SourceNode(.object(pairs.map { .init(key: $0.0, keyPosition: .unknown, value: $0.1) }))
    }

    var isNull: Bool { if case .null = value { return true } else { return false } }
    var intValue: Int? { if case .number(let n) = value { return n.int } else { return nil } }
    var boolValue: Bool? { if case .bool(let b) = value { return b } else { return nil } }

    /// The member whose key matches ignoring case, as ARM looks properties up.
    func armMember(_ key: String) -> SourceNode? {
        members?.first { $0.key.caseInsensitiveCompare(key) == .orderedSame }?.value
    }

    /// ARM's `string()`: strings as they are, numbers as digits, booleans `True`/`False`, null empty,
    /// arrays and objects as compact JSON.
    var armString: String {
        switch value {
        case .string(let s): return s
        case .number(let n): return n.text
        case .bool(let b): return b ? "True" : "False"
        case .null: return ""
        case .array, .object: return jsonText()
        }
    }

    /// Deep equality as `equals()` defines it: same kind and value; object keys compare ignoring case and
    /// order; numbers by value.
    func armEquals(_ other: SourceNode) -> Bool {
        switch (value, other.value) {
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a), .number(let b)): return a.text == b.text || (a.double != nil && a.double == b.double)
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.armEquals($1) }
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            return a.allSatisfy { m in other.armMember(m.key).map { m.value.armEquals($0) } ?? false }
        default: return false
        }
    }

    /// An expression result carries no source position of its own; the caller stamps where it was written.
    func stripped() -> SourceNode {
        var n = self
        n.yamlText = nil
        return n
    }
}
