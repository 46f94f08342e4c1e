import Foundation

// String functions (https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-string).
extension ARMFunctions {
    static let strings: [String: Function] = [
        "concat": { a in
            if !a.values.isEmpty, a.values.allSatisfy({ $0.elements != nil }) { return .array(a.values.flatMap { $0.elements! }) }
            var out = ""
            for (i, v) in a.values.enumerated() {
                switch v.value {
                case .string, .number, .bool, .null: out += v.armString
                default: throw a.fail("argument \(i + 1) is \(v.kindName): concat() joins either strings or arrays")
                }
            }
            return .string(out)
        },
        "format": { a in
            try a.arity(1...Int.max)
            return .string(try format(try a.string(0), a.values.dropFirst().map(\.armString), function: a.name))
        },
        "tolower": { a in
            try a.arity(1...1)
            return .string(try a.string(0).lowercased())
        },
        "toupper": { a in
            try a.arity(1...1)
            return .string(try a.string(0).uppercased())
        },
        "trim": { a in
            try a.arity(1...1)
            return .string(try a.string(0).trimmingCharacters(in: .whitespacesAndNewlines))
        },
        "string": { a in
            try a.arity(1...1)
            return .string(a[0].armString)
        },
        "substring": { a in
            try a.arity(1...3)
            let s = UTF16Text(try a.string(0))
            let start = a.count > 1 ? try a.int(1) : 0
            guard start >= 0 else { throw a.fail("the start index \(start) is negative") }
            guard start <= s.count else { throw a.fail("the start index \(start) is beyond the string's length \(s.count)") }
            let length = a.count > 2 ? try a.int(2) : s.count - start
            guard length >= 0 else { throw a.fail("the length \(length) is negative") }
            guard length <= s.count - start else {
                throw a.fail(
                    "the index and length parameters must refer to a location within the string (start \(start) + length \(length) > \(s.count))")
            }
            return .string(s[start..<(start + length)])
        },
        "replace": { a in
            try a.arity(3...3)
            let old = try a.string(1)
            guard !old.isEmpty else { throw a.fail("the string to replace is empty") }
            return .string(try a.string(0).replacingOccurrences(of: old, with: try a.string(2)))
        },
        "split": { a in
            try a.arity(2...2)
            let s = try a.string(0)
            let delimiters: [String]
            if let list = a[1].elements {
                delimiters = try list.map {
                    guard let d = $0.stringValue else { throw a.fail("the delimiters must be strings") }
                    return d
                }
            } else {
                delimiters = [try a.string(1)]
            }
            return .array(split(s, by: delimiters).map { .string($0) })
        },
        "join": { a in
            try a.arity(2...2)
            let parts = try a.array(0).map { v -> String in
                switch v.value {
                case .string, .number, .bool: return v.armString
                default: throw a.fail("join() joins strings, numbers and booleans, found \(v.kindName)")
                }
            }
            return .string(parts.joined(separator: try a.string(1)))
        },
        "startswith": { a in
            try a.arity(2...2)
            return .bool(try a.string(0).lowercased().hasPrefix(try a.string(1).lowercased()))
        },
        "endswith": { a in
            try a.arity(2...2)
            return .bool(try a.string(0).lowercased().hasSuffix(try a.string(1).lowercased()))
        },
        "indexof": { a in
            try a.arity(2...2)
            if let list = a[0].elements { return .int(list.firstIndex { $0.armEquals(a[1]) } ?? -1) }
            return .int(UTF16Text(try a.string(0).lowercased()).index(of: UTF16Text(try a.string(1).lowercased()), last: false))
        },
        "lastindexof": { a in
            try a.arity(2...2)
            if let list = a[0].elements { return .int(list.lastIndex { $0.armEquals(a[1]) } ?? -1) }
            return .int(UTF16Text(try a.string(0).lowercased()).index(of: UTF16Text(try a.string(1).lowercased()), last: true))
        },
        "padleft": { a in
            try a.arity(2...3)
            let s = try a.text(0)
            let width = try a.int(1)
            let pad = a.count > 2 ? try a.string(2) : " "
            guard pad.count == 1 else { throw a.fail("the padding must be one character, found '\(pad)'") }
            guard width <= 16_384 else { throw a.fail("the total length \(width) is too large") }
            let length = s.utf16.count
            return .string(length >= width ? s : String(repeating: pad, count: width - length) + s)
        },
        "guid": { a in
            try a.arity(1...Int.max)
            var parts: [String] = []
            for i in 0..<a.count { parts.append(try a.string(i)) }
            return .string(ARMHash.guid(parts))
        },
        "uniquestring": { a in
            try a.arity(1...Int.max)
            var parts: [String] = []
            for i in 0..<a.count { parts.append(try a.string(i)) }
            return .string(ARMHash.uniqueString(parts))
        }
    ]

    /// .NET composite formatting as `format()` does it: `{0}`, `{1,5}`, `{0:N2}`-style specifiers for integers,
    /// `{{` and `}}`.
    static func format(_ fmt: String, _ values: [String], function: String = "format") throws -> String {
        var out = ""
        let chars = Array(fmt)
        var i = 0
        func fail(_ m: String) -> ARMEvaluator.EvalError { ARMEvaluator.EvalError(message: "\(function)(): \(m)") }
        while i < chars.count {
            let c = chars[i]
            if c == "{" {
                if i + 1 < chars.count, chars[i + 1] == "{" {
                    out.append("{")
                    i += 2
                    continue
                }
                guard let close = chars[i...].firstIndex(of: "}") else { throw fail("unmatched '{' in '\(fmt)'") }
                let spec = String(chars[(i + 1)..<close])
                let (head, specifier) = spec.firstIndex(of: ":").map { (String(spec[..<$0]), String(spec[spec.index(after: $0)...])) } ?? (spec, "")
                let indexAndWidth = head.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard let n = indexAndWidth.first.flatMap({ Int($0) }), n >= 0 else { throw fail("'{\(spec)}' is not a placeholder like {0}") }
                guard n < values.count else { throw fail("'{\(n)}' has no argument (\(values.count) given)") }
                var text = values[n]
                if !specifier.isEmpty { text = try numberFormat(text, specifier, fail: fail) }
                if indexAndWidth.count == 2, let width = Int(indexAndWidth[1]) {
                    guard width.magnitude <= 16_384 else { throw fail("the width \(width) in '{\(spec)}' is too large") }
                    let pad = String(repeating: " ", count: max(0, Int(width.magnitude) - text.count))
                    text = width < 0 ? text + pad : pad + text
                }
                out += text
                i = close + 1
            } else if c == "}" {
                guard i + 1 < chars.count, chars[i + 1] == "}" else { throw fail("unmatched '}' in '\(fmt)'") }
                out.append("}")
                i += 2
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }

    /// The .NET standard numeric formats templates use on integers: `D`/`Dn` (digits, zero-padded), `N`/`Nn`
    /// (thousands separators), `X`/`x` (hexadecimal).
    private static func numberFormat(_ text: String, _ spec: String, fail: (String) -> ARMEvaluator.EvalError) throws -> String {
        guard let v = Int(text) else { throw fail("the format '\(spec)' needs an integer, found '\(text)'") }
        let kind = spec.first!
        let precision = Int(spec.dropFirst())
        if let precision, precision < 0 || precision > 99 { throw fail("the precision in '\(spec)' must be between 0 and 99") }
        switch kind {
        case "D", "d":
            let digits = String(v.magnitude)
            return (v < 0 ? "-" : "") + String(repeating: "0", count: max(0, (precision ?? 0) - digits.count)) + digits
        case "N", "n":
            let digits = String(v.magnitude)
            var grouped = ""
            for (i, ch) in digits.reversed().enumerated() {
                if i > 0, i % 3 == 0 { grouped.append(",") }
                grouped.append(ch)
            }
            let decimals = precision ?? 2
            return (v < 0 ? "-" : "") + String(grouped.reversed()) + (decimals > 0 ? "." + String(repeating: "0", count: decimals) : "")
        case "X", "x":
            let hex = String(UInt64(bitPattern: Int64(v)), radix: 16, uppercase: kind == "X")
            return String(repeating: "0", count: max(0, (precision ?? 0) - hex.count)) + hex
        default:
            throw fail("the format specifier '\(spec)' is not supported (D, N, X are)")
        }
    }

    /// Splits on any of the delimiters, keeping empty parts (as .NET's String.Split does), by UTF-16 units.
    static func split(_ s: String, by delimiters: [String]) -> [String] {
        let ds = delimiters.filter { !$0.isEmpty }.map { Array($0.utf16) }
        guard !ds.isEmpty else { return [s] }
        let u = Array(s.utf16)
        var parts: [String] = []
        var start = 0, i = 0
        while i < u.count {
            if let d = ds.first(where: { i + $0.count <= u.count && Array(u[i..<(i + $0.count)]) == $0 }) {
                parts.append(String(decoding: u[start..<i], as: UTF16.self))
                i += d.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(String(decoding: u[start..<u.count], as: UTF16.self))
        return parts
    }
}
