import Foundation

/// ARM's type system for parameters (languageVersion 2.0 `definitions`, and the classic keywords): a schema is a
/// JSON object with `type`, `$ref`, `nullable`, `allowedValues`, `minLength`/`maxLength`, `minValue`/`maxValue`,
/// `properties`, `additionalProperties`, `items`/`prefixItems` and `discriminator`. `check` says what in a value
/// breaks its schema, with the place inside the value (`[0].type`).
struct ARMTypes {
    /// `definitions`, by name.
    var definitions: [String: SourceNode] = [:]

    static let typeNames = ["string", "securestring", "int", "bool", "object", "secureobject", "array"]

    init(definitions: SourceNode?) {
        for m in definitions?.members ?? [] { self.definitions[m.key] = m.value }
    }

    /// The schema with its `$ref` followed (recursively); keywords written next to `$ref` win over the target's.
    func resolve(_ schema: SourceNode, depth: Int = 0) -> SourceNode {
        guard depth < 32, let members = schema.members, let ref = schema.armMember("$ref")?.stringValue,
            ref.hasPrefix("#/definitions/"), let target = definitions[String(ref.dropFirst("#/definitions/".count))]
        else { return schema }
        var merged = resolve(target, depth: depth + 1).members ?? []
        for m in members where m.key != "$ref" {
            if let i = merged.firstIndex(where: { $0.key.caseInsensitiveCompare(m.key) == .orderedSame }) { merged[i] = m } else { merged.append(m) }
        }
        return SourceNode(.object(merged), at: schema.position)
    }

    /// A `$ref` that names no definition, if the schema (or one nested in it) has one.
    func danglingReference(in schema: SourceNode) -> String? {
        if let ref = schema.armMember("$ref")?.stringValue {
            guard ref.hasPrefix("#/definitions/"), definitions[String(ref.dropFirst("#/definitions/".count))] != nil else { return ref }
        }
        return nil
    }

    func type(of schema: SourceNode) -> String? { resolve(schema).armMember("type")?.stringValue?.lowercased() }
    func isNullable(_ schema: SourceNode) -> Bool { resolve(schema).armMember("nullable")?.boolValue ?? false }

    /// What is wrong with `value` under `schema`, or nil. `at` is the place inside the value ("" for the value itself).
    func check(_ value: SourceNode, _ schema: SourceNode, at: String = "", depth: Int = 0) -> String? {
        let s = resolve(schema)
        let place = at.isEmpty ? "" : " at \(at)"
        if value.isNull {
            return isNullable(s) ? nil : "expected \(Self.article(type(of: s) ?? "value"))\(place), found null"
        }
        guard depth < 64 else { return nil }
        if let t = type(of: s), let problem = Self.kindMismatch(value, t) { return "expected \(Self.article(t))\(place), found \(problem)" }
        if let allowed = s.armMember("allowedValues")?.elements {
            let ok: Bool
            if let items = value.elements, !allowed.contains(where: { $0.elements != nil }) {
                ok = items.allSatisfy { e in allowed.contains { $0.armEquals(e) } }  // an array may hold any subset
            } else {
                ok = allowed.contains { $0.armEquals(value) }
            }
            if !ok { return "\(value.jsonText().prefix(80))\(place) is not one of the allowed values \(allowed.map { $0.jsonText() }.joined(separator: ", "))" }
        }
        let length: Int? = value.stringValue?.count ?? value.elements?.count
        if let length {
            if let min = s.armMember("minLength")?.intValue, length < min { return "the length\(place) is \(length), less than the minimum \(min)" }
            if let max = s.armMember("maxLength")?.intValue, length > max { return "the length\(place) is \(length), more than the maximum \(max)" }
        }
        if let n = value.intValue {
            if let min = s.armMember("minValue")?.intValue, n < min { return "\(n)\(place) is less than the minimum value \(min)" }
            if let max = s.armMember("maxValue")?.intValue, n > max { return "\(n)\(place) is more than the maximum value \(max)" }
        }
        if let members = value.members {
            if let d = s.armMember("discriminator"), let property = d.armMember("propertyName")?.stringValue, let mapping = d.armMember("mapping")?.members {
                guard let tag = value.armMember(property)?.stringValue else {
                    return
                        "the discriminator property '\(property)'\(place) is missing (expected one of \(mapping.map { "'\($0.key)'" }.joined(separator: ", ")))"
                }
                guard let variant = mapping.first(where: { $0.key == tag })?.value else {
                    return "'\(tag)'\(place.isEmpty ? "" : place).\(property) is not one of \(mapping.map { "'\($0.key)'" }.joined(separator: ", "))"
                }
                if let problem = check(value, variant, at: at, depth: depth + 1) { return problem }
            }
            let declared = s.armMember("properties")?.members ?? []
            for p in declared {
                let sub = at.isEmpty ? p.key : "\(at).\(p.key)"
                if let v = value.armMember(p.key) {
                    if let problem = check(v, p.value, at: sub, depth: depth + 1) { return problem }
                } else if !isNullable(p.value) {
                    return "the required property '\(p.key)'\(place) is missing"
                }
            }
            if let extra = s.armMember("additionalProperties") {
                for m in members where !declared.contains(where: { $0.key.caseInsensitiveCompare(m.key) == .orderedSame }) {
                    let sub = at.isEmpty ? m.key : "\(at).\(m.key)"
                    if extra.boolValue == false { return "the property '\(m.key)'\(place) is not allowed (the type is sealed)" }
                    if extra.members != nil, let problem = check(m.value, extra, at: sub, depth: depth + 1) { return problem }
                }
            }
        }
        if let elements = value.elements {
            let prefix = s.armMember("prefixItems")?.elements ?? []
            for (i, e) in elements.enumerated() {
                let sub = "\(at)[\(i)]"
                if i < prefix.count {
                    if let problem = check(e, prefix[i], at: sub, depth: depth + 1) { return problem }
                } else if let items = s.armMember("items") {
                    if items.boolValue == false { return "the array\(place) has \(elements.count) items, more than the \(prefix.count) its type allows" }
                    if items.members != nil, let problem = check(e, items, at: sub, depth: depth + 1) { return problem }
                }
            }
        }
        return nil
    }

    /// The kind `value` has if it is not `type`, else nil.
    static func kindMismatch(_ value: SourceNode, _ type: String) -> String? {
        switch (type, value.value) {
        case ("string", .string), ("securestring", .string), ("bool", .bool), ("object", .object), ("secureobject", .object), ("array", .array):
            return nil
        case ("int", .number(let n)) where n.int != nil:
            return nil
        default:
            return value.kindName
        }
    }

    static func article(_ type: String) -> String {
        switch type {
        case "int": return "an int"
        case "object", "array": return "an \(type)"
        case "securestring", "secureobject": return "a \(type)"
        default: return "a \(type)"
        }
    }
}
