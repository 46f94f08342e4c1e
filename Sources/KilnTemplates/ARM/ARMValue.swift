import Foundation

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
