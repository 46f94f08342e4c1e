import Foundation

// Encodings and URIs: base64, data URIs, `uri()`, `uriComponent()`, `json()`.
extension ARMFunctions {
    static let encodings: [String: Function] = [
        "base64": { a in
            try a.arity(1...1)
            return .string(Data(try a.string(0).utf8).base64EncodedString())
        },
        "base64tostring": { a in
            try a.arity(1...1)
            return .string(try decodeBase64(try a.string(0), a))
        },
        "base64tojson": { a in
            try a.arity(1...1)
            return try parseJSON(try decodeBase64(try a.string(0), a), a)
        },
        "datauri": { a in
            try a.arity(1...1)
            return .string("data:text/plain;charset=utf8;base64," + Data(a[0].armString.utf8).base64EncodedString())
        },
        "datauritostring": { a in
            try a.arity(1...1)
            let uri = try a.string(0)
            guard uri.hasPrefix("data:"), let comma = uri.firstIndex(of: ",") else { throw a.fail("'\(uri.prefix(40))' is not a data URI") }
            let header = uri[uri.index(uri.startIndex, offsetBy: 5)..<comma]
            let payload = String(uri[uri.index(after: comma)...])
            if header.hasSuffix(";base64") { return .string(try decodeBase64(payload, a)) }
            return .string(payload.removingPercentEncoding ?? payload)
        },
        "uri": { a in
            try a.arity(2...2)
            let base = try a.string(0), relative = try a.string(1)
            guard let b = URL(string: base), b.scheme != nil else { throw a.fail("'\(base)' is not an absolute URI") }
            guard let u = URL(string: relative, relativeTo: b) else { throw a.fail("'\(relative)' is not a URI reference") }
            return .string(u.absoluteString)
        },
        "uricomponent": { a in
            try a.arity(1...1)
            return .string(try a.string(0).addingPercentEncoding(withAllowedCharacters: uriUnreserved) ?? "")
        },
        "uricomponenttostring": { a in
            try a.arity(1...1)
            let s = try a.string(0)
            guard let decoded = s.removingPercentEncoding else { throw a.fail("'\(s.prefix(40))' is not percent-encoded text") }
            return .string(decoded)
        },
        "json": { a in
            try a.arity(1...1)
            return try parseJSON(try a.string(0), a)
        }
    ]

    /// RFC 3986's unreserved characters: what `uriComponent()` (.NET's `Uri.EscapeDataString`) leaves as it is.
    static let uriUnreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

    private static func decodeBase64(_ s: String, _ a: Arguments) throws -> String {
        guard let data = Data(base64Encoded: s), let text = String(data: data, encoding: .utf8) else {
            throw a.fail("'\(s.prefix(40))' is not base64-encoded UTF-8 text")
        }
        return text
    }

    private static func parseJSON(_ text: String, _ a: Arguments) throws -> SourceNode {
        do {
            return try JSONSourceParser.parse(text).stripped().withoutPositions()
        } catch {
            throw a.fail("the text is not JSON (\(error))")
        }
    }
}

extension SourceNode {
    /// The same value with no source positions: a value computed by an expression is located where the
    /// expression is, not inside the string it was parsed from.
    func withoutPositions() -> SourceNode {
        switch value {
        case .object(let members):
            return SourceNode(.object(members.map { .init(key: $0.key, keyPosition: .unknown, value: $0.value.withoutPositions()) }))
        case .array(let elements):
            return SourceNode(.array(elements.map { $0.withoutPositions() }))
        default:
            return SourceNode(value)
        }
    }
}
