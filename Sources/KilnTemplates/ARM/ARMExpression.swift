import Crypto
import Foundation

/// The part of ARM's template expression language that AIB deployment templates use.
///
/// Supported: `parameters()`, `variables()`, `concat()`, `format()`, `toLower()`, `toUpper()`,
/// `resourceGroup()` (`.id`, `.name`, `.location`), `subscription()` (`.subscriptionId`, `.id`),
/// `resourceId()`, `uniqueString()`, string and integer literals, nested calls, property access (`.x`)
/// and indexing (`[0]`, `['x']`). Anything else is an error that names the function; an expression is
/// never passed through as text, so a template can never build with `[reference(...)]` as its location.
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
    public static func parse(_ text: String) throws(ParseError) -> ARMExpression {
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

        mutating func expression() throws(ParseError) -> ARMExpression {
            skipSpaces()
            guard index < chars.count else { throw ParseError(message: "expression ends unexpectedly") }
            var e: ARMExpression
            let c = chars[index]
            if c == "'" {
                e = .string(try stringLiteral())
            } else if c.isNumber || c == "-" {
                e = .integer(try integer())
            } else if c.isLetter || c == "_" {
                let name = identifier()
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

/// What `resourceGroup()` and `subscription()` return, and where parameters come from.
public struct DeploymentScope: Sendable, Hashable {
    public var subscriptionId: String
    public var resourceGroup: String
    public var location: String
    public init(subscriptionId: String, resourceGroup: String, location: String) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.location = location
    }
}

/// Evaluates ARM expressions against a deployment's parameters and variables.
struct ARMEvaluator {
    struct EvalError: Error { var message: String }
    /// A value that depends on something already reported (a parameter without a valid value).
    struct AlreadyReported: Error {}

    /// The functions Kiln evaluates, lower-cased.
    static let supported: Set<String> = [
        "parameters", "variables", "concat", "format", "tolower", "toupper", "resourcegroup", "subscription", "resourceid", "uniquestring"
    ]

    var scope: DeploymentScope
    /// Parameter values, already resolved.
    var parameters: [String: SourceNode] = [:]
    /// Declared parameters whose value was missing or invalid (already reported).
    var failedParameters: Set<String> = []
    /// Variable definitions (unevaluated) and evaluated cache.
    var variableDefinitions: [String: SourceNode] = [:]
    var variableCache: [String: SourceNode] = [:]
    var evaluating: Set<String> = []
    /// Whether `variables()` is allowed (not in parameter defaults).
    var allowVariables = true

    // MARK: Walk a tree

    /// Evaluates every expression in `node` (keys and values); errors are reported and the failing value
    /// is suppressed for later checks.
    mutating func evaluateTree(_ node: SourceNode, path: JSONPath, ctx: DecodeContext) -> SourceNode {
        switch node.value {
        case .string(let s):
            return evaluateString(s, node: node, path: path, ctx: ctx)
        case .array(let elements):
            var out: [SourceNode] = []
            for (i, e) in elements.enumerated() { out.append(evaluateTree(e, path: path / i, ctx: ctx)) }
            return SourceNode(.array(out), at: node.position)
        case .object(let members):
            var out: [SourceNode.Member] = []
            for m in members {
                var key = m.key
                if ARMExpression.isExpression(key) {
                    let k = evaluateString(key, node: SourceNode(.string(key), at: m.keyPosition), path: path / key, ctx: ctx)
                    if case .string(let ks) = k.value {
                        key = ks
                    } else if !ctx.isSuppressed(k) {
                        ctx.error(.invalidTemplate, "a property name expression must produce a string, found \(k.kindName)", path / m.key, m.keyPosition)
                    }
                } else {
                    key = ARMExpression.unescape(key)
                }
                out.append(.init(key: key, keyPosition: m.keyPosition, value: evaluateTree(m.value, path: path / key, ctx: ctx)))
            }
            return SourceNode(.object(out), at: node.position)
        default:
            return node
        }
    }

    mutating func evaluateString(_ s: String, node: SourceNode, path: JSONPath, ctx: DecodeContext) -> SourceNode {
        guard ARMExpression.isExpression(s) else {
            return SourceNode(.string(ARMExpression.unescape(s)), at: node.position)
        }
        do {
            let expr = try ARMExpression.parse(s)
            var result = try evaluate(expr)
            result.position = node.position
            result.yamlText = nil
            return result
        } catch let e as ARMExpression.ParseError {
            ctx.error(.invalidTemplate, "cannot parse the expression: \(e.message)", path, node.position)
        } catch let e as EvalError {
            ctx.error(.invalidTemplate, "\(e.message) (in \(s))", path, node.position)
        } catch is AlreadyReported {
            // The cause was reported where it is (the parameter's declaration).
        } catch {
            ctx.error(.invalidTemplate, "\(error)", path, node.position)
        }
        ctx.suppressed.insert(node.position)
        return SourceNode(.string(s), at: node.position)
    }

    // MARK: Evaluate

    mutating func evaluate(_ e: ARMExpression) throws -> SourceNode {
        switch e {
        case .string(let s): return SourceNode(.string(s))
        case .integer(let i): return SourceNode(.number(NumberLiteral(String(i))))
        case .property(let base, let name):
            let b = try evaluate(base)
            guard let members = b.members else { throw EvalError(message: "cannot read property '\(name)' of \(b.kindName)") }
            guard let m = members.first(where: { $0.key.lowercased() == name.lowercased() }) else {
                throw EvalError(message: "the object has no property '\(name)' (it has \(members.map { "'\($0.key)'" }.joined(separator: ", ")))")
            }
            return m.value
        case .index(let base, let indexExpr):
            let b = try evaluate(base)
            let i = try evaluate(indexExpr)
            switch (b.value, i.value) {
            case (.array(let elements), .number(let n)):
                guard let k = n.int, k >= 0, k < elements.count else {
                    throw EvalError(message: "index \(n.text) is out of range (the array has \(elements.count) elements)")
                }
                return elements[k]
            case (.object(let members), .string(let key)):
                guard let m = members.first(where: { $0.key.lowercased() == key.lowercased() }) else {
                    throw EvalError(message: "the object has no property '\(key)'")
                }
                return m.value
            default:
                throw EvalError(message: "cannot index \(b.kindName) with \(i.kindName)")
            }
        case .call(let name, let args):
            return try call(name, args)
        }
    }

    private mutating func stringArg(_ e: ARMExpression, _ fn: String) throws -> String {
        let v = try evaluate(e)
        switch v.value {
        case .string(let s): return s
        case .number(let n): return n.text
        case .bool(let b): return b ? "True" : "False"
        default: throw EvalError(message: "\(fn)() expects a string argument, found \(v.kindName)")
        }
    }

    private mutating func call(_ name: String, _ args: [ARMExpression]) throws -> SourceNode {
        let fn = name.lowercased()
        func arity(_ range: ClosedRange<Int>) throws {
            guard range.contains(args.count) else {
                let expected = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
                throw EvalError(message: "\(name)() takes \(expected) argument\(range.upperBound == 1 ? "" : "s"), found \(args.count)")
            }
        }
        switch fn {
        case "parameters":
            try arity(1...1)
            let p = try stringArg(args[0], name)
            guard let v = parameters.first(where: { $0.key.lowercased() == p.lowercased() })?.value else {
                if failedParameters.contains(p.lowercased()) { throw AlreadyReported() }
                throw EvalError(message: "parameter '\(p)' is not defined in the template's parameters")
            }
            return v
        case "variables":
            try arity(1...1)
            guard allowVariables else { throw EvalError(message: "variables() cannot be used in a parameter's defaultValue") }
            let v = try stringArg(args[0], name)
            return try variable(v)
        case "concat":
            let values = try args.map { try evaluate($0) }
            if !values.isEmpty, values.allSatisfy({ $0.elements != nil }) {
                return SourceNode(.array(values.flatMap { $0.elements! }))
            }
            var out = ""
            for v in values {
                switch v.value {
                case .string(let s): out += s
                case .number(let n): out += n.text
                case .bool(let b): out += b ? "True" : "False"
                case .null: break
                default: throw EvalError(message: "concat() mixes strings with \(v.kindName)")
                }
            }
            return SourceNode(.string(out))
        case "format":
            guard !args.isEmpty else { throw EvalError(message: "format() needs a format string") }
            let fmt = try stringArg(args[0], name)
            var values: [String] = []
            for a in args.dropFirst() { values.append(try stringArg(a, name)) }
            return SourceNode(.string(try Self.format(fmt, values)))
        case "tolower":
            try arity(1...1)
            return SourceNode(.string(try stringArg(args[0], name).lowercased()))
        case "toupper":
            try arity(1...1)
            return SourceNode(.string(try stringArg(args[0], name).uppercased()))
        case "resourcegroup":
            try arity(0...0)
            let id = "/subscriptions/\(scope.subscriptionId)/resourceGroups/\(scope.resourceGroup)"
            return Self.object(["id": id, "name": scope.resourceGroup, "type": "Microsoft.Resources/resourceGroups", "location": scope.location])
        case "subscription":
            try arity(0...0)
            return Self.object([
                "id": "/subscriptions/\(scope.subscriptionId)", "subscriptionId": scope.subscriptionId,
                "tenantId": "00000000-0000-0000-0000-000000000000", "displayName": scope.subscriptionId
            ])
        case "resourceid":
            var strings: [String] = []
            for a in args { strings.append(try stringArg(a, name)) }
            return SourceNode(.string(try resourceId(strings)))
        case "uniquestring":
            guard !args.isEmpty else { throw EvalError(message: "uniqueString() needs at least one argument") }
            var strings: [String] = []
            for a in args { strings.append(try stringArg(a, name)) }
            return SourceNode(.string(Self.uniqueString(strings)))
        default:
            let list = ["parameters", "variables", "concat", "format", "toLower", "toUpper", "resourceGroup", "subscription", "resourceId", "uniqueString"]
            throw EvalError(message: "the function '\(name)' is not supported by Kiln; supported functions: \(list.joined(separator: ", "))")
        }
    }

    private mutating func variable(_ name: String) throws -> SourceNode {
        let key = variableDefinitions.keys.first { $0.lowercased() == name.lowercased() }
        guard let key, let def = variableDefinitions[key] else {
            throw EvalError(message: "variable '\(name)' is not defined in the template's variables")
        }
        if let cached = variableCache[key] { return cached }
        if evaluating.contains(key) { throw EvalError(message: "variable '\(name)' refers to itself") }
        evaluating.insert(key)
        defer { evaluating.remove(key) }
        // Variables are evaluated without a diagnostic sink of their own: an error inside one is reported
        // at the place that uses it.
        let value = try evaluateStrict(def)
        variableCache[key] = value
        return value
    }

    /// Evaluates a whole subtree, throwing on the first problem.
    mutating func evaluateStrict(_ node: SourceNode) throws -> SourceNode {
        switch node.value {
        case .string(let s):
            guard ARMExpression.isExpression(s) else { return SourceNode(.string(ARMExpression.unescape(s)), at: node.position) }
            let expr: ARMExpression
            do { expr = try ARMExpression.parse(s) } catch { throw EvalError(message: "cannot parse \(s): \(error.message)") }
            var v = try evaluate(expr)
            v.position = node.position
            return v
        case .array(let elements):
            return SourceNode(.array(try elements.map { try evaluateStrict($0) }), at: node.position)
        case .object(let members):
            var out: [SourceNode.Member] = []
            for m in members {
                var key = ARMExpression.unescape(m.key)
                if ARMExpression.isExpression(m.key) {
                    guard case .string(let k) = try evaluateStrict(SourceNode(.string(m.key))).value else {
                        throw EvalError(message: "a property name expression must produce a string")
                    }
                    key = k
                }
                out.append(.init(key: key, keyPosition: m.keyPosition, value: try evaluateStrict(m.value)))
            }
            return SourceNode(.object(out), at: node.position)
        default:
            return node
        }
    }

    static func object(_ values: [String: String]) -> SourceNode {
        SourceNode(.object(values.sorted { $0.key < $1.key }.map { .init(key: $0.key, keyPosition: .unknown, value: SourceNode(.string($0.value))) }))
    }

    /// `resourceId([subscriptionId], [resourceGroupName], resourceType, resourceName1, [resourceName2], ...)`.
    func resourceId(_ args: [String]) throws -> String {
        guard let typeIndex = args.firstIndex(where: { $0.contains("/") && $0.contains(".") && !$0.hasPrefix("/") }), typeIndex <= 2 else {
            throw EvalError(message: "resourceId() needs a resource type such as 'Microsoft.Compute/images'")
        }
        var sub = scope.subscriptionId, rg = scope.resourceGroup
        if typeIndex == 2 { sub = args[0]; rg = args[1] } else if typeIndex == 1 { rg = args[0] }
        let typeParts = args[typeIndex].split(separator: "/").map(String.init)
        let names = Array(args[(typeIndex + 1)...])
        guard typeParts.count >= 2, names.count == typeParts.count - 1 else {
            throw EvalError(
                message:
                    "resourceId(): type '\(args[typeIndex])' needs \(max(typeParts.count - 1, 1)) name\(typeParts.count == 2 ? "" : "s"), found \(names.count)")
        }
        var id = "/subscriptions/\(sub)/resourceGroups/\(rg)/providers/\(typeParts[0])"
        for (t, n) in zip(typeParts.dropFirst(), names) { id += "/\(t)/\(n)" }
        return id
    }

    /// .NET composite formatting: `{0}`, `{1}`, `{{` and `}}`.
    static func format(_ fmt: String, _ values: [String]) throws -> String {
        var out = ""
        let chars = Array(fmt)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "{" {
                if i + 1 < chars.count, chars[i + 1] == "{" { out.append("{"); i += 2; continue }
                guard let close = chars[i...].firstIndex(of: "}") else { throw EvalError(message: "format(): unmatched '{' in '\(fmt)'") }
                let spec = String(chars[(i + 1)..<close])
                let indexText = spec.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
                guard let n = Int(indexText.trimmingCharacters(in: .whitespaces)), n >= 0 else {
                    throw EvalError(message: "format(): '{\(spec)}' is not a placeholder like {0}")
                }
                guard n < values.count else { throw EvalError(message: "format(): '{\(n)}' has no argument (\(values.count) given)") }
                if spec.contains(":") { throw EvalError(message: "format(): format specifiers such as '{\(spec)}' are not supported") }
                out += values[n]
                i = close + 1
            } else if c == "}" {
                if i + 1 < chars.count, chars[i + 1] == "}" { out.append("}"); i += 2; continue }
                throw EvalError(message: "format(): unmatched '}' in '\(fmt)'")
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }

    /// A deterministic 13-character base-32 string from the arguments, like ARM's `uniqueString()`.
    /// It is stable across runs and machines but is not bit-for-bit ARM's value.
    static func uniqueString(_ values: [String]) -> String {
        let digest = SHA256.hash(data: Data(values.joined(separator: "-").utf8))
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var bits: UInt64 = 0
        for b in digest.prefix(8) { bits = (bits << 8) | UInt64(b) }
        var out = ""
        for _ in 0..<13 {
            out.append(alphabet[Int(bits & 31)])
            bits >>= 5
        }
        return out
    }
}
