// Template text as a tree that remembers where each value came from: `SourceNode`, and the JSON and YAML parsers that build it.
import Foundation
import Yams

/// A position in a source file, 1-based.
public struct SourcePosition: Sendable, Hashable, Codable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public static let unknown = SourcePosition(line: 0, column: 0)
}

/// A number exactly as written, so that `30` and `30.0` and `3e1` can be told apart where it matters
/// (an integer field given `30.5` is an error, not a silent truncation).
public struct NumberLiteral: Sendable, Hashable {
    public var text: String
    public init(_ text: String) { self.text = text }
    /// The value when the literal is an integer that fits in `Int`.
    public var int: Int? {
        if let i = Int(text) { return i }
        if let d = Double(text), d.rounded() == d, abs(d) < 9.0e15 { return Int(d) }
        return nil
    }
    public var double: Double? { Double(text) }
}

/// A JSON-shaped value that remembers where it came from.
///
/// JSON and YAML both parse into this tree, and ARM expressions evaluate into it, so decoding and
/// validation are written once and every diagnostic can name a source line whatever the input format.
public struct SourceNode: Sendable, Hashable {
    public indirect enum Value: Sendable, Hashable {
        case object([Member])
        case array([SourceNode])
        case string(String)
        case number(NumberLiteral)
        case bool(Bool)
        case null
    }
    public struct Member: Sendable, Hashable {
        public var key: String
        public var keyPosition: SourcePosition
        public var value: SourceNode
        public init(key: String, keyPosition: SourcePosition, value: SourceNode) {
            self.key = key
            self.keyPosition = keyPosition
            self.value = value
        }
    }

    public var value: Value
    public var position: SourcePosition
    /// For a YAML plain scalar resolved to a number, boolean or null: the text as written. YAML authors
    /// write `sku: 12` and mean a string; string fields accept such scalars by their text.
    public var yamlText: String?

    public init(_ value: Value, at position: SourcePosition = .unknown, yamlText: String? = nil) {
        self.value = value
        self.position = position
        self.yamlText = yamlText
    }

    /// A short name of the value's kind, for messages ("expected a string, found an array").
    public var kindName: String {
        switch value {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    public var members: [Member]? {
        if case .object(let m) = value { return m }
        return nil
    }
    public var elements: [SourceNode]? {
        if case .array(let a) = value { return a }
        return nil
    }
    public var stringValue: String? {
        if case .string(let s) = value { return s }
        return nil
    }

    /// The member with this exact key.
    public subscript(key: String) -> SourceNode? {
        members?.first(where: { $0.key == key })?.value
    }

    /// The member whose key matches case-insensitively.
    public func member(caseInsensitive key: String) -> SourceNode? {
        let k = key.lowercased()
        return members?.first(where: { $0.key.lowercased() == k })?.value
    }

    /// Converts to Foundation-free plain JSON text (compact, keys in source order). Used by tests and
    /// when a parameter value is given on the command line.
    public func jsonText() -> String {
        var out = ""
        Self.write(self, into: &out)
        return out
    }

    private static func write(_ node: SourceNode, into out: inout String) {
        switch node.value {
        case .object(let members):
            out += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { out += "," }
                out += jsonQuoted(m.key)
                out += ":"
                write(m.value, into: &out)
            }
            out += "}"
        case .array(let elements):
            out += "["
            for (i, e) in elements.enumerated() {
                if i > 0 { out += "," }
                write(e, into: &out)
            }
            out += "]"
        case .string(let s): out += jsonQuoted(s)
        case .number(let n): out += n.text
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }
}

/// A JSON string literal for `s`.
public func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out += "\""
    return out
}

/// A syntax error in a source file, with the position where parsing stopped.
public struct SyntaxError: Error, Sendable, Hashable {
    public var message: String
    public var position: SourcePosition
}

// MARK: - JSON

/// A strict JSON parser that records line and column of every value and key.
///
/// Foundation's `JSONSerialization` loses positions, and a diagnostic without a line is much less
/// useful in a 300-line deployment template. Beyond RFC 8259 it accepts what Azure's tooling accepts in
/// templates: a UTF-8 byte-order mark and `//` / `/* */` comments. Duplicate keys are errors, since
/// which one wins is ambiguous.
public struct JSONSourceParser {
    private let bytes: [UInt8]
    private var index: Int = 0
    private var line: Int = 1
    private var lineStart: Int = 0
    private var depth = 0
    private static let maxDepth = 256

    public static func parse(_ text: String) throws(SyntaxError) -> SourceNode {
        var parser = JSONSourceParser(bytes: Array(text.utf8))
        return try parser.parseDocument()
    }

    public static func parse(bytes: [UInt8]) throws(SyntaxError) -> SourceNode {
        var parser = JSONSourceParser(bytes: bytes)
        return try parser.parseDocument()
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3; lineStart = 3 }
    }

    private var position: SourcePosition { SourcePosition(line: line, column: index - lineStart + 1) }

    private func fail(_ message: String) -> SyntaxError {
        SyntaxError(message: message, position: position)
    }

    private mutating func parseDocument() throws(SyntaxError) -> SourceNode {
        try skipWhitespace()
        guard index < bytes.count else { throw fail("the file is empty") }
        let node = try parseValue()
        try skipWhitespace()
        if index < bytes.count {
            throw fail("unexpected '\(Character(UnicodeScalar(bytes[index])))' after the end of the JSON value")
        }
        return node
    }

    private mutating func skipWhitespace() throws(SyntaxError) {
        while index < bytes.count {
            let b = bytes[index]
            switch b {
            case 0x20, 0x09, 0x0D:
                index += 1
            case 0x0A:
                index += 1
                line += 1
                lineStart = index
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "/"):
                while index < bytes.count && bytes[index] != 0x0A { index += 1 }
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                let start = position
                index += 2
                var closed = false
                while index < bytes.count {
                    if bytes[index] == UInt8(ascii: "*") && index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "/") {
                        index += 2
                        closed = true
                        break
                    }
                    if bytes[index] == 0x0A { line += 1; lineStart = index + 1 }
                    index += 1
                }
                if !closed { throw SyntaxError(message: "unterminated /* comment", position: start) }
            default:
                return
            }
        }
    }

    private mutating func parseValue() throws(SyntaxError) -> SourceNode {
        guard index < bytes.count else { throw fail("unexpected end of file, expected a value") }
        let start = position
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return SourceNode(.string(try parseString()), at: start)
        case UInt8(ascii: "t"): try expectWord("true"); return SourceNode(.bool(true), at: start)
        case UInt8(ascii: "f"): try expectWord("false"); return SourceNode(.bool(false), at: start)
        case UInt8(ascii: "n"): try expectWord("null"); return SourceNode(.null, at: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return SourceNode(.number(try parseNumber()), at: start)
        default:
            throw fail("unexpected '\(printable(bytes[index]))', expected a value")
        }
    }

    private func printable(_ b: UInt8) -> String {
        b >= 0x20 && b < 0x7F ? String(Character(UnicodeScalar(b))) : String(format: "\\x%02x", b)
    }

    private mutating func expectWord(_ word: String) throws(SyntaxError) {
        let w = Array(word.utf8)
        guard index + w.count <= bytes.count, Array(bytes[index..<index + w.count]) == w else {
            throw fail("invalid literal, expected '\(word)'")
        }
        index += w.count
    }

    private mutating func enter() throws(SyntaxError) {
        depth += 1
        if depth > Self.maxDepth { throw fail("nesting deeper than \(Self.maxDepth) levels") }
    }

    private mutating func parseObject() throws(SyntaxError) -> SourceNode {
        let start = position
        try enter()
        defer { depth -= 1 }
        index += 1
        var members: [SourceNode.Member] = []
        var seen: [String: SourcePosition] = [:]
        try skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
            index += 1
            return SourceNode(.object([]), at: start)
        }
        while true {
            try skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
                    throw fail("trailing comma before '}'")
                }
                throw fail("expected a property name in double quotes")
            }
            let keyPos = position
            let key = try parseString()
            if let first = seen[key] {
                throw SyntaxError(message: "duplicate property '\(key)' (first at line \(first.line))", position: keyPos)
            }
            seen[key] = keyPos
            try skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw fail("expected ':' after property name '\(key)'")
            }
            index += 1
            try skipWhitespace()
            let value = try parseValue()
            members.append(.init(key: key, keyPosition: keyPos, value: value))
            try skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of file, expected ',' or '}'") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; break }
            throw fail("expected ',' or '}' after the value of '\(key)'")
        }
        return SourceNode(.object(members), at: start)
    }

    private mutating func parseArray() throws(SyntaxError) -> SourceNode {
        let start = position
        try enter()
        defer { depth -= 1 }
        index += 1
        var elements: [SourceNode] = []
        try skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "]") {
            index += 1
            return SourceNode(.array([]), at: start)
        }
        while true {
            try skipWhitespace()
            if index < bytes.count && bytes[index] == UInt8(ascii: "]") { throw fail("trailing comma before ']'") }
            elements.append(try parseValue())
            try skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of file, expected ',' or ']'") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; break }
            throw fail("expected ',' or ']' in array")
        }
        return SourceNode(.array(elements), at: start)
    }

    private mutating func parseString() throws(SyntaxError) -> String {
        let start = position
        index += 1
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else { throw SyntaxError(message: "unterminated string", position: start) }
            let b = bytes[index]
            if b == UInt8(ascii: "\"") { index += 1; break }
            if b == 0x0A { throw SyntaxError(message: "unterminated string (line break inside a string)", position: start) }
            if b < 0x20 { throw fail("control character inside a string; escape it") }
            if b == UInt8(ascii: "\\") {
                index += 1
                guard index < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw fail("lone high surrogate in \\u escape")
                        }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid low surrogate in \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw fail("lone low surrogate in \\u escape")
                    }
                    guard let scalar = UnicodeScalar(code) else { throw fail("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw fail("invalid escape '\\\(printable(e))'")
                }
                continue
            }
            out.append(b)
            index += 1
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw SyntaxError(message: "string is not valid UTF-8", position: start)
        }
        return s
    }

    private mutating func parseHex4() throws(SyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[index]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v * 16 + d
            index += 1
        }
        return v
    }

    private mutating func parseNumber() throws(SyntaxError) -> NumberLiteral {
        let startIndex = index
        func digits(_ p: inout JSONSourceParser) -> Int {
            var n = 0
            while p.index < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.index]) {
                p.index += 1
                n += 1
            }
            return n
        }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits(&self) == 0 {
            throw fail("invalid number")
        }
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            if digits(&self) == 0 { throw fail("invalid number: digits expected after '.'") }
        }
        if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if index < bytes.count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) { index += 1 }
            if digits(&self) == 0 { throw fail("invalid number: digits expected in exponent") }
        }
        return NumberLiteral(String(decoding: bytes[startIndex..<index], as: UTF8.self))
    }
}

// MARK: - YAML

/// Converts YAML (through Yams) into a `SourceNode` tree with positions.
public enum YAMLSourceParser {
    public static func parse(_ text: String) throws(SyntaxError) -> SourceNode {
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw syntaxError(from: error)
        } catch {
            throw SyntaxError(message: "\(error)", position: .unknown)
        }
        guard let root else { throw SyntaxError(message: "the file is empty", position: SourcePosition(line: 1, column: 1)) }
        return try convert(root, depth: 0)
    }

    private static func syntaxError(from error: YamlError) -> SyntaxError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let ctx = context.map { "\($0.text) " } ?? ""
            return SyntaxError(message: "YAML: \(ctx)\(problem)", position: SourcePosition(line: mark.line, column: mark.column))
        case .composer(let context, let problem, let mark, _):
            let ctx = context.map { "\($0.text) " } ?? ""
            return SyntaxError(message: "YAML: \(ctx)\(problem)", position: SourcePosition(line: mark.line, column: mark.column))
        case .reader(let problem, _, _, _):
            return SyntaxError(message: "YAML: \(problem)", position: .unknown)
        default:
            return SyntaxError(message: "YAML: \(error)", position: .unknown)
        }
    }

    private static func pos(_ mark: Mark?) -> SourcePosition {
        guard let mark else { return .unknown }
        return SourcePosition(line: mark.line, column: mark.column)
    }

    private static func convert(_ node: Yams.Node, depth: Int) throws(SyntaxError) -> SourceNode {
        if depth > 256 { throw SyntaxError(message: "nesting deeper than 256 levels", position: pos(node.mark)) }
        switch node {
        case .scalar(let scalar):
            let p = pos(scalar.mark)
            let text = scalar.string
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue:
                return SourceNode(.null, at: p, yamlText: text)
            case Tag.Name.bool.rawValue:
                return SourceNode(.bool(Bool.construct(from: scalar) ?? false), at: p, yamlText: text)
            case Tag.Name.int.rawValue:
                if let i = Int.construct(from: scalar) { return SourceNode(.number(NumberLiteral(String(i))), at: p, yamlText: text) }
                return SourceNode(.string(text), at: p)
            case Tag.Name.float.rawValue:
                if let d = Double.construct(from: scalar), d.isFinite {
                    return SourceNode(.number(NumberLiteral(String(d))), at: p, yamlText: text)
                }
                return SourceNode(.string(text), at: p)
            default:
                return SourceNode(.string(scalar.string), at: p)
            }
        case .sequence(let seq):
            var out: [SourceNode] = []
            for element in seq { out.append(try convert(element, depth: depth + 1)) }
            return SourceNode(.array(out), at: pos(seq.mark))
        case .mapping(let map):
            var members: [SourceNode.Member] = []
            var seen: [String: SourcePosition] = [:]
            for (k, v) in map {
                guard case .scalar(let keyScalar) = k else {
                    throw SyntaxError(message: "YAML: mapping keys must be plain strings", position: pos(k.mark))
                }
                let kp = pos(keyScalar.mark)
                if let first = seen[keyScalar.string] {
                    throw SyntaxError(message: "duplicate key '\(keyScalar.string)' (first at line \(first.line))", position: kp)
                }
                seen[keyScalar.string] = kp
                members.append(.init(key: keyScalar.string, keyPosition: kp, value: try convert(v, depth: depth + 1)))
            }
            return SourceNode(.object(members), at: pos(map.mark))
        case .alias(let alias):
            throw SyntaxError(message: "YAML: unresolved alias", position: pos(alias.mark))
        }
    }
}
