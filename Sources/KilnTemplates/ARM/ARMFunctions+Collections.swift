import Foundation

// Array and object functions: those that take either a string, an array or an object (`length`,
// `contains`, `first`, …), then arrays, then objects.
extension ARMFunctions {
    static let collections: [String: Function] = [
        "length": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .string(let s): return .int(s.utf16.count)
            case .array(let e): return .int(e.count)
            case .object(let m): return .int(m.count)
            default: throw a.fail("takes a string, an array or an object, found \(a[0].kindName)")
            }
        },
        "empty": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .string(let s): return .bool(s.isEmpty)
            case .array(let e): return .bool(e.isEmpty)
            case .object(let m): return .bool(m.isEmpty)
            case .null: return .bool(true)
            default: throw a.fail("takes a string, an array, an object or null, found \(a[0].kindName)")
            }
        },
        "contains": { a in
            try a.arity(2...2)
            switch a[0].value {
            case .string(let s): return .bool(UTF16Text(s).index(of: UTF16Text(try a.text(1)), last: false) >= 0)
            case .array(let e): return .bool(e.contains { $0.armEquals(a[1]) })
            case .object: return .bool(a[0].armMember(try a.text(1)) != nil)
            default: throw a.fail("the container must be a string, an array or an object, found \(a[0].kindName)")
            }
        },
        "first": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .string(let s):
                let t = UTF16Text(s)
                return .string(t.count == 0 ? "" : t[0..<1])
            case .array(let e): return e.first ?? .null
            default: throw a.fail("takes a string or an array, found \(a[0].kindName)")
            }
        },
        "last": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .string(let s):
                let t = UTF16Text(s)
                return .string(t.count == 0 ? "" : t[(t.count - 1)..<t.count])
            case .array(let e): return e.last ?? .null
            default: throw a.fail("takes a string or an array, found \(a[0].kindName)")
            }
        },
        "skip": { a in
            try a.arity(2...2)
            let n = max(0, try a.int(1))
            switch a[0].value {
            case .string(let s): return .string(UTF16Text(units: s.utf16.dropFirst(n)).string)
            case .array(let e): return .array(Array(e.dropFirst(n)))
            default: throw a.fail("takes a string or an array, found \(a[0].kindName)")
            }
        },
        "take": { a in
            try a.arity(2...2)
            let n = max(0, try a.int(1))
            switch a[0].value {
            case .string(let s): return .string(UTF16Text(units: s.utf16.prefix(n)).string)
            case .array(let e): return .array(Array(e.prefix(n)))
            default: throw a.fail("takes a string or an array, found \(a[0].kindName)")
            }
        },
        "array": { a in
            try a.arity(1...1)
            return a[0].elements != nil ? a[0] : .array([a[0]])
        },
        "createarray": { a in .array(a.values) },
        "flatten": { a in
            try a.arity(1...1)
            return .array(
                try a.array(0).flatMap { e -> [SourceNode] in
                    guard let inner = e.elements else { throw a.fail("every element must be an array, found \(e.kindName)") }
                    return inner
                })
        },
        "range": { a in
            try a.arity(2...2)
            let start = try a.int(0), count = try a.int(1)
            guard count >= 0, count <= 10_000 else { throw a.fail("the count \(count) must be between 0 and 10000") }
            guard start <= Int(Int32.max) - count, start >= Int(Int32.min) else { throw a.fail("start + count must not exceed 2147483647") }
            return .array((0..<count).map { .int(start + $0) })
        },
        "min": { a in try extreme(a, max: false) },
        "max": { a in try extreme(a, max: true) },
        "union": { a in
            try a.arity(1...Int.max)
            if a.values.allSatisfy({ $0.elements != nil }) {
                var out: [SourceNode] = []
                for e in a.values.flatMap({ $0.elements! }) where !out.contains(where: { $0.armEquals(e) }) { out.append(e) }
                return .array(out)
            }
            var merged = SourceNode.object([])
            for (i, v) in a.values.enumerated() {
                guard v.members != nil else { throw a.fail("argument \(i + 1) is \(v.kindName): union() takes all arrays or all objects") }
                merged = deepMerge(merged, v)
            }
            return merged
        },
        "intersection": { a in
            try a.arity(2...Int.max)
            if a.values.allSatisfy({ $0.elements != nil }) {
                var out: [SourceNode] = []
                for e in a.values[0].elements! where !out.contains(where: { $0.armEquals(e) }) {
                    if a.values.dropFirst().allSatisfy({ $0.elements!.contains { $0.armEquals(e) } }) { out.append(e) }
                }
                return .array(out)
            }
            guard a.values.allSatisfy({ $0.members != nil }) else { throw a.fail("takes all arrays or all objects") }
            let kept = a.values[0].members!.filter { m in a.values.dropFirst().allSatisfy { $0.armMember(m.key)?.armEquals(m.value) == true } }
            return SourceNode(.object(kept))
        }
    ]

    static let objects: [String: Function] = [
        "createobject": { a in
            guard a.count % 2 == 0 else { throw a.fail("takes key, value pairs: found \(a.count) arguments") }
            var pairs: [(String, SourceNode)] = []
            for i in stride(from: 0, to: a.count, by: 2) {
                let key = try a.string(i)
                pairs.removeAll { $0.0.caseInsensitiveCompare(key) == .orderedSame }
                pairs.append((key, a[i + 1]))
            }
            return .object(pairs)
        },
        "null": { a in
            try a.arity(0...0)
            return .null
        },
        "objectkeys": { a in
            try a.arity(1...1)
            return .array(try a.object(0).map { .string($0.key) })
        },
        "items": { a in
            try a.arity(1...1)
            let sorted = try a.object(0).sorted { $0.key.lowercased() < $1.key.lowercased() }
            return .array(sorted.map { .object([("key", .string($0.key)), ("value", $0.value)]) })
        },
        "shallowmerge": { a in
            try a.arity(1...1)
            var pairs: [SourceNode.Member] = []
            for (i, o) in try a.array(0).enumerated() {
                guard let members = o.members else { throw a.fail("element \(i) is \(o.kindName); shallowMerge() merges objects") }
                for m in members {
                    if let k = pairs.firstIndex(where: { $0.key.caseInsensitiveCompare(m.key) == .orderedSame }) { pairs[k] = m } else { pairs.append(m) }
                }
            }
            return SourceNode(.object(pairs))
        },
        "tryget": { a in
            try a.arity(2...Int.max)
            var current = a[0]
            for i in 1..<a.count {
                switch (current.value, a[i].value) {
                case (.object, .string(let key)):
                    guard let v = current.armMember(key) else { return .null }
                    current = v
                case (.array(let e), .number(let n)):
                    guard let k = n.int, k >= 0, k < e.count else { return .null }
                    current = e[k]
                default:
                    // Not a container, or a key of the wrong kind: nothing there.
                    return .null
                }
            }
            return current
        }
    ]

    /// `union()` of objects: later values win; nested objects merge the same way, arrays are replaced.
    static func deepMerge(_ base: SourceNode, _ overlay: SourceNode) -> SourceNode {
        guard var members = base.members, let extra = overlay.members else { return overlay }
        for m in extra {
            if let k = members.firstIndex(where: { $0.key.caseInsensitiveCompare(m.key) == .orderedSame }) {
                members[k].value = members[k].value.members != nil && m.value.members != nil ? deepMerge(members[k].value, m.value) : m.value
            } else {
                members.append(m)
            }
        }
        return SourceNode(.object(members))
    }

    private static func extreme(_ a: Arguments, max: Bool) throws -> SourceNode {
        try a.arity(1...Int.max)
        let values = a.count == 1 && a[0].elements != nil ? a[0].elements! : a.values
        guard !values.isEmpty else { throw a.fail("needs at least one value") }
        var best: Int?
        for v in values {
            guard let i = v.intValue else { throw a.fail("compares integers, found \(v.kindName)") }
            if best == nil || (max ? i > best! : i < best!) { best = i }
        }
        return .int(best!)
    }
}
