import Foundation

/// Shared state while one resource is decoded: where diagnostics go, which api-version rules apply, and
/// which values must not be checked further (documentation placeholders, failed ARM expressions) so that
/// one mistake is reported once instead of cascading into a dozen shape errors.
final class DecodeContext {
    var sink: DiagnosticSink
    /// Case-sensitive names, unknown properties rejected (api-version ≥ 2024-02-01).
    var strict: Bool
    var apiVersion: APIVersion
    /// Positions of values already reported (failed expressions) or holding placeholders.
    var suppressed: Set<SourcePosition> = []
    /// What artifact references may reach (nil: not judged here, e.g. a template read back from the store).
    var policy: ArtifactPolicy?
    /// The template file's directory inside its repository, when known: relative references must resolve
    /// inside the repository from there.
    var templateDirectory: String?
    /// The line of each artifact reference accepted, and of the source, by JSON path (for problems found
    /// after decoding, such as a symbolic link out of the repository or a build-order cycle).
    var artifactLines: [String: Int] = [:]

    init(sink: DiagnosticSink, apiVersion: APIVersion) {
        self.sink = sink
        self.apiVersion = apiVersion
        self.strict = apiVersion.isStrict
    }

    func error(_ code: ErrorCode, _ message: String, _ path: JSONPath, _ position: SourcePosition) {
        sink.error(code, message, at: path, position)
    }
    func warning(_ code: ErrorCode, _ message: String, _ path: JSONPath, _ position: SourcePosition) {
        sink.warning(code, message, at: path, position)
    }
    /// A context for one resource that keeps this one's artifact rules.
    func resourceContext(apiVersion: APIVersion) -> DecodeContext {
        let c = DecodeContext(sink: sink, apiVersion: apiVersion)
        c.suppressed = suppressed
        c.policy = policy
        c.templateDirectory = templateDirectory
        return c
    }

    func isSuppressed(_ node: SourceNode) -> Bool { suppressed.contains(node.position) && node.position != .unknown }
}

/// Reads one JSON object with the api-version's name rules, type-checks each property, reports what is
/// missing or wrong with its path and line, and at the end reports every property nobody asked for.
final class ObjectReader {
    let node: SourceNode
    let path: JSONPath
    let ctx: DecodeContext
    let members: [SourceNode.Member]
    /// The code for type errors of properties of this object.
    let code: ErrorCode
    private var used: Set<String> = []
    private var asked: [String] = []
    /// Set when the object's `type` is missing or unknown: its other properties cannot be judged.
    var skipUnknownCheck = false

    init?(_ node: SourceNode, path: JSONPath, ctx: DecodeContext, code: ErrorCode) {
        guard let members = node.members else {
            if !ctx.isSuppressed(node) {
                ctx.error(code, "expected an object, found \(node.kindName)", path, node.position)
            }
            return nil
        }
        self.node = node
        self.path = path
        self.ctx = ctx
        self.members = members
        self.code = code
    }

    var position: SourcePosition { node.position }

    /// The member for `key`, honouring case rules. JSON `null` counts as absent, as in ARM.
    func member(_ key: String) -> SourceNode.Member? {
        asked.append(key)
        if let m = members.first(where: { $0.key == key }) {
            used.insert(m.key)
            return m.value.value == .null ? nil : m
        }
        if !ctx.strict {
            let lower = key.lowercased()
            if let m = members.first(where: { $0.key.lowercased() == lower }) {
                used.insert(m.key)
                return m.value.value == .null ? nil : m
            }
        }
        return nil
    }

    /// Marks keys as known without reading them (read-only properties, ARM-only envelope keys).
    func accept(_ keys: String...) {
        for k in keys { _ = member(k) }
    }

    func value(_ key: String) -> (node: SourceNode, path: JSONPath)? {
        guard let m = member(key) else { return nil }
        // The path names the property as spelled in the file (old api-versions match case-insensitively).
        return (m.value, path / m.key)
    }

    func has(_ key: String) -> Bool { member(key) != nil }

    private func missing(_ key: String, _ code: ErrorCode?, _ what: String? = nil) {
        let message = what ?? "the property '\(key)' is required"
        ctx.error(code ?? self.code, message, path / key, position)
    }

    func string(_ key: String, code: ErrorCode? = nil, required: Bool = false, nonEmpty: Bool = false) -> String? {
        guard let (n, p) = value(key) else {
            if required { missing(key, code) }
            return nil
        }
        return Self.string(n, path: p, ctx: ctx, code: code ?? self.code, nonEmpty: nonEmpty || required)
    }

    static func string(_ n: SourceNode, path: JSONPath, ctx: DecodeContext, code: ErrorCode, nonEmpty: Bool = false) -> String? {
        if ctx.isSuppressed(n) { return nil }
        if let text = n.yamlText { return text }
        switch n.value {
        case .string(let s):
            if nonEmpty && s.trimmingCharacters(in: .whitespaces).isEmpty {
                ctx.error(code, "must not be empty", path, n.position)
                return nil
            }
            return s
        case .number(let num) where !ctx.strict:
            return num.text
        case .bool(let b) where !ctx.strict:
            return b ? "true" : "false"
        default:
            ctx.error(code, "expected a string, found \(n.kindName)", path, n.position)
            return nil
        }
    }

    func int(_ key: String, code: ErrorCode? = nil, range: ClosedRange<Int>? = nil, required: Bool = false) -> Int? {
        guard let (n, p) = value(key) else {
            if required { missing(key, code) }
            return nil
        }
        return Self.int(n, path: p, ctx: ctx, code: code ?? self.code, range: range)
    }

    static func int(_ n: SourceNode, path: JSONPath, ctx: DecodeContext, code: ErrorCode, range: ClosedRange<Int>? = nil) -> Int? {
        if ctx.isSuppressed(n) { return nil }
        var result: Int?
        switch n.value {
        case .number(let num):
            guard let i = num.int else {
                ctx.error(code, "expected an integer, found \(num.text)", path, n.position)
                return nil
            }
            result = i
        case .string(let s) where !ctx.strict:
            // Old api-versions deserialised loosely: "30" was accepted for an integer.
            guard let i = Int(s.trimmingCharacters(in: .whitespaces)) else {
                ctx.error(code, "expected an integer, found the string '\(s)'", path, n.position)
                return nil
            }
            result = i
        default:
            ctx.error(code, "expected an integer, found \(n.kindName)", path, n.position)
            return nil
        }
        if let range, let r = result, !range.contains(r) {
            ctx.error(code, "\(r) is out of range; expected \(range.lowerBound)...\(range.upperBound)", path, n.position)
            return nil
        }
        return result
    }

    func bool(_ key: String, code: ErrorCode? = nil) -> Bool? {
        guard let (n, p) = value(key) else { return nil }
        if ctx.isSuppressed(n) { return nil }
        switch n.value {
        case .bool(let b): return b
        case .string(let s) where !ctx.strict && ["true", "false"].contains(s.lowercased()):
            return s.lowercased() == "true"
        default:
            ctx.error(code ?? self.code, "expected true or false, found \(n.kindName)", p, n.position)
            return nil
        }
    }

    func enumeration<E: AIBEnum>(_ key: String, _ type: E.Type, code: ErrorCode? = nil, required: Bool = false) -> E? {
        guard let (n, p) = value(key) else {
            if required { missing(key, code, "the property '\(key)' is required; expected \(E.spellings)") }
            return nil
        }
        guard let s = Self.string(n, path: p, ctx: ctx, code: code ?? self.code) else { return nil }
        guard let e = E.matching(s) else {
            ctx.error(code ?? self.code, "'\(s)' is not valid; expected \(E.spellings)", p, n.position)
            return nil
        }
        return e
    }

    func array(_ key: String, code: ErrorCode? = nil, required: Bool = false) -> [(node: SourceNode, path: JSONPath)]? {
        guard let (n, p) = value(key) else {
            if required { missing(key, code) }
            return nil
        }
        if ctx.isSuppressed(n) { return nil }
        guard let elements = n.elements else {
            ctx.error(code ?? self.code, "expected an array, found \(n.kindName)", p, n.position)
            return nil
        }
        return elements.enumerated().map { ($0.element, p / $0.offset) }
    }

    func stringArray(_ key: String, code: ErrorCode? = nil, required: Bool = false) -> [String]? {
        guard let items = array(key, code: code, required: required) else { return nil }
        var out: [String] = []
        var ok = true
        for (n, p) in items {
            if let s = Self.string(n, path: p, ctx: ctx, code: code ?? self.code) { out.append(s) } else { ok = false }
        }
        return ok ? out : nil
    }

    func intArray(_ key: String, code: ErrorCode? = nil) -> [Int]? {
        guard let items = array(key, code: code) else { return nil }
        var out: [Int] = []
        var ok = true
        for (n, p) in items {
            if let i = Self.int(n, path: p, ctx: ctx, code: code ?? self.code) { out.append(i) } else { ok = false }
        }
        return ok ? out : nil
    }

    /// A map of string values (`tags`, `artifactTags`, `managedResourceTags`), with ARM's tag limits.
    func stringMap(_ key: String, code: ErrorCode? = nil) -> [String: String]? {
        guard let (n, p) = value(key) else { return nil }
        if ctx.isSuppressed(n) { return nil }
        guard let members = n.members else {
            ctx.error(code ?? self.code, "expected an object of string values, found \(n.kindName)", p, n.position)
            return nil
        }
        var out: [String: String] = [:]
        for m in members {
            let mp = p / m.key
            if m.key.count > 512 {
                ctx.error(code ?? self.code, "tag name longer than 512 characters", mp, m.keyPosition)
                continue
            }
            switch m.value.value {
            case .string(let s):
                if s.count > 256 { ctx.error(code ?? self.code, "tag value longer than 256 characters", mp, m.value.position) }
                out[m.key] = s
            case .number(let num): out[m.key] = num.text
            case .bool(let b): out[m.key] = b ? "true" : "false"
            case .null: out[m.key] = ""
            default:
                if !ctx.isSuppressed(m.value) {
                    ctx.error(code ?? self.code, "expected a string value, found \(m.value.kindName)", mp, m.value.position)
                }
            }
        }
        if members.count > 50 {
            ctx.error(code ?? self.code, "at most 50 tags are allowed, found \(members.count)", p, n.position)
        }
        return out
    }

    func object(_ key: String, code: ErrorCode? = nil, required: Bool = false) -> ObjectReader? {
        guard let (n, p) = value(key) else {
            if required { missing(key, code) }
            return nil
        }
        return ObjectReader(n, path: p, ctx: ctx, code: code ?? self.code)
    }

    /// Reports every property that was never asked for: an error from api-version 2024-02-01 on, a
    /// warning (AIB ignores it) before.
    func finish() {
        if skipUnknownCheck { return }
        for m in members where !used.contains(m.key) {
            let p = path / m.key
            let suggestion = Self.suggestion(for: m.key, among: asked)
            if ctx.strict {
                var msg = "unknown property '\(m.key)'"
                if let s = suggestion {
                    msg +=
                        s.lowercased() == m.key.lowercased()
                        ? "; property names are case-sensitive from api-version \(APIVersion.strictFrom): did you mean '\(s)'?"
                        : "; did you mean '\(s)'?"
                } else {
                    msg += " (api-version \(ctx.apiVersion) rejects unknown properties)"
                }
                ctx.error(.invalidRequestContent, msg, p, m.keyPosition)
            } else {
                var msg = "unknown property '\(m.key)' is ignored by api-version \(ctx.apiVersion)"
                if let s = suggestion { msg += "; did you mean '\(s)'?" }
                ctx.warning(.invalidRequestContent, msg, p, m.keyPosition)
            }
        }
    }

    /// The closest known name (case-insensitive equal, or within two edits).
    static func suggestion(for key: String, among known: [String]) -> String? {
        let lower = key.lowercased()
        if let exact = known.first(where: { $0.lowercased() == lower }) { return exact }
        var best: (String, Int)?
        for k in Set(known) {
            let d = editDistance(lower, k.lowercased())
            if d <= 2, best == nil || d < best!.1 { best = (k, d) }
        }
        return best?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
