import Crypto
import Foundation

/// An ARM template expression: string and integer literals, function calls (`ns.f()` for user-defined
/// functions), property access (`.x`) and indexing (`[0]`, `['x']`). `ARMEvaluator` gives it a value; an
/// expression is never passed through as text, so a template can never build with `[reference(...)]` as its
/// location.
public indirect enum ARMExpression: Sendable, Hashable {
    case string(String)
    case integer(Int)
    case call(name: String, arguments: [ARMExpression])
    case property(ARMExpression, String)
    case index(ARMExpression, ARMExpression)

    public struct ParseError: Error, Sendable, Hashable {
        public var message: String
    }

    /// Whether `text` is an expression (`[...]`, but not the `[[` escape).
    public static func isExpression(_ text: String) -> Bool {
        text.hasPrefix("[") && text.hasSuffix("]") && !text.hasPrefix("[[") && text.count >= 2
    }

    /// The literal a `[[...` string stands for.
    public static func unescape(_ text: String) -> String {
        text.hasPrefix("[[") ? String(text.dropFirst()) : text
    }

    /// Parses the text between the outer brackets.
    /// ARM's limit on the length of one expression.
    public static let maximumLength = 24_576
    /// How deep calls, indexes and properties may nest: far beyond any real template, well within the stack.
    static let maximumDepth = 200

    public static func parse(_ text: String) throws(ParseError) -> ARMExpression {
        guard text.count <= maximumLength else {
            throw ParseError(message: "the expression is \(text.count) characters long; ARM allows at most \(maximumLength)")
        }
        var p = Parser(chars: Array(text.dropFirst().dropLast()))
        p.skipSpaces()
        let e = try p.expression()
        p.skipSpaces()
        if p.index < p.chars.count {
            throw ParseError(message: "unexpected '\(p.chars[p.index])' at position \(p.index + 1) of expression \(text)")
        }
        return e
    }

    private struct Parser {
        let chars: [Character]
        var index = 0

        mutating func skipSpaces() {
            while index < chars.count, chars[index].isWhitespace { index += 1 }
        }

        var depth = 0

        mutating func expression() throws(ParseError) -> ARMExpression {
            depth += 1
            defer { depth -= 1 }
            guard depth <= ARMExpression.maximumDepth else {
                throw ParseError(message: "the expression nests deeper than \(ARMExpression.maximumDepth) levels")
            }
            skipSpaces()
            guard index < chars.count else { throw ParseError(message: "expression ends unexpectedly") }
            var e: ARMExpression
            let c = chars[index]
            if c == "'" {
                e = .string(try stringLiteral())
            } else if c.isNumber || c == "-" {
                e = .integer(try integer())
            } else if c.isLetter || c == "_" {
                var name = identifier()
                // A user-defined function: `namespace.member(`.
                if index < chars.count, chars[index] == "." {
                    let save = index
                    index += 1
                    let member = identifier()
                    skipSpaces()
                    if !member.isEmpty, index < chars.count, chars[index] == "(" { name += "." + member } else { index = save }
                }
                skipSpaces()
                guard index < chars.count, chars[index] == "(" else {
                    throw ParseError(message: "'\(name)' must be followed by '(' (a function call)")
                }
                index += 1
                var args: [ARMExpression] = []
                skipSpaces()
                if index < chars.count, chars[index] == ")" {
                    index += 1
                } else {
                    while true {
                        args.append(try expression())
                        skipSpaces()
                        guard index < chars.count else { throw ParseError(message: "missing ')' after the arguments of \(name)()") }
                        if chars[index] == "," { index += 1; continue }
                        if chars[index] == ")" { index += 1; break }
                        throw ParseError(message: "expected ',' or ')' in the arguments of \(name)(), found '\(chars[index])'")
                    }
                }
                e = .call(name: name, arguments: args)
            } else {
                throw ParseError(message: "unexpected '\(c)' in expression")
            }
            while true {
                skipSpaces()
                guard index < chars.count else { break }
                if chars[index] == "." {
                    index += 1
                    skipSpaces()
                    let name = identifier()
                    if name.isEmpty { throw ParseError(message: "expected a property name after '.'") }
                    e = .property(e, name)
                } else if chars[index] == "[" {
                    index += 1
                    let inner = try expression()
                    skipSpaces()
                    guard index < chars.count, chars[index] == "]" else { throw ParseError(message: "missing ']' after an index") }
                    index += 1
                    e = .index(e, inner)
                } else {
                    break
                }
            }
            return e
        }

        mutating func identifier() -> String {
            let start = index
            while index < chars.count, chars[index].isLetter || chars[index].isNumber || chars[index] == "_" { index += 1 }
            return String(chars[start..<index])
        }

        mutating func integer() throws(ParseError) -> Int {
            let start = index
            if chars[index] == "-" { index += 1 }
            while index < chars.count, chars[index].isNumber { index += 1 }
            guard let v = Int(String(chars[start..<index])) else { throw ParseError(message: "invalid integer literal") }
            return v
        }

        mutating func stringLiteral() throws(ParseError) -> String {
            index += 1
            var out = ""
            while true {
                guard index < chars.count else { throw ParseError(message: "unterminated string literal (a quote inside a string is written '')") }
                if chars[index] == "'" {
                    if index + 1 < chars.count, chars[index + 1] == "'" {
                        out.append("'")
                        index += 2
                        continue
                    }
                    index += 1
                    return out
                }
                out.append(chars[index])
                index += 1
            }
        }
    }
}
