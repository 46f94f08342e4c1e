import Foundation

/// What the context functions return (`resourceGroup()`, `subscription()`, `tenant()`, `deployment()`,
/// `deployer()`): the deployment Kiln stands in for, from its configuration.
public struct DeploymentScope: Sendable, Hashable {
    public var subscriptionId: String
    public var resourceGroup: String
    public var location: String
    public var tenantId: String
    /// `deployment().name`: by default the template file's base name, as Azure PowerShell names a deployment.
    public var deploymentName: String?
    /// `deployment().properties.templateLink.uri`, for templates that locate their artifacts from it
    /// (`_artifactsLocation`); absent for a local file, as in ARM.
    public var templateLink: String?
    /// `utcNow()` in parameter defaults: pinned (a GitOps commit's time) so that the same commit always yields the
    /// same template names; nil means the current time.
    public var now: Date?
    /// `newGuid()` in parameter defaults: derived from this seed (in GitOps, the file and its blob) when set; random
    /// otherwise.
    public var newGuidSeed: String?
    /// Whether `utcNow()` is refused (GitOps: a value that changed on every read would rename or rebuild the template
    /// each time, so the parameter must be given a value).
    public var refusesClock = false

    public init(
        subscriptionId: String, resourceGroup: String, location: String, tenantId: String = "00000000-0000-0000-0000-000000000000",
        deploymentName: String? = nil, templateLink: String? = nil, now: Date? = nil, newGuidSeed: String? = nil
    ) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.location = location
        self.tenantId = tenantId
        self.deploymentName = deploymentName
        self.templateLink = templateLink
        self.now = now
        self.newGuidSeed = newGuidSeed
    }
}

/// Evaluates ARM template expressions against a deployment: parameters, variables, user-defined functions,
/// lambdas, copy loops, and the context functions synthesized from `DeploymentScope`.
///
/// `if`, `and` and `or` evaluate only what they need (a template's other branch may read a property that does not
/// exist); functions that read live Azure state (`reference()` of a resource outside the template, `list*()`) are
/// errors that say so, raised only when the value is needed.
struct ARMEvaluator {
    struct EvalError: Error { var message: String }
    /// A value that depends on something already reported (a parameter without a valid value).
    struct AlreadyReported: Error {}

    /// A user-defined function (`functions[].members`): its parameter names and output expression.
    struct UserFunction {
        var parameters: [String]
        var output: SourceNode
    }

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
    /// Whether `utcNow()` and `newGuid()` are allowed (only in a parameter's defaultValue).
    var inParameterDefault = false
    /// `namespace.name` (lower case) → function.
    var userFunctions: [String: UserFunction] = [:]
    /// The innermost lambda's (or user function's) parameters first.
    var lambdaScopes: [[String: SourceNode]] = []
    /// The current index of each copy loop (lower-cased name); `currentLoop` is what `copyIndex()` without a
    /// name means.
    var copyIndexes: [String: Int] = [:]
    var currentLoop: String?
    /// How deep inside nested deployments the evaluation is (outer scope shares this evaluator).
    var deploymentDepth = 0
    /// `newGuid()` calls so far (each derived value differs when a seed pins them).
    private var newGuidCount = 0

    init(scope: DeploymentScope) {
        self.scope = scope
    }

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
                if m.key.lowercased() == "copy", let loops = Self.propertyLoops(m.value) {
                    do {
                        out += try expandPropertyLoops(loops)
                    } catch let e as EvalError {
                        ctx.error(.invalidTemplate, e.message, path / m.key, m.keyPosition)
                        ctx.suppressed.insert(node.position)
                    } catch is AlreadyReported {
                        ctx.suppressed.insert(node.position)
                    } catch {
                        ctx.error(.invalidTemplate, "\(error)", path / m.key, m.keyPosition)
                    }
                    continue
                }
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
            let expr = try parsed(s)
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

    /// Evaluates a whole subtree, throwing on the first problem.
    mutating func evaluateStrict(_ node: SourceNode) throws -> SourceNode {
        switch node.value {
        case .string(let s):
            guard ARMExpression.isExpression(s) else { return SourceNode(.string(ARMExpression.unescape(s)), at: node.position) }
            let expr: ARMExpression
            do { expr = try parsed(s) } catch { throw EvalError(message: "cannot parse \(s): \(error.message)") }
            var v = try evaluate(expr)
            v.position = node.position
            return v
        case .array(let elements):
            return SourceNode(.array(try elements.map { try evaluateStrict($0) }), at: node.position)
        case .object(let members):
            var out: [SourceNode.Member] = []
            for m in members {
                if m.key.lowercased() == "copy", let loops = Self.propertyLoops(m.value) {
                    out += try expandPropertyLoops(loops)
                    continue
                }
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

    /// Parsed expressions by their text: a copy loop evaluates the same (often long) expression once per instance.
    private var parseCache: [String: ARMExpression] = [:]

    private mutating func parsed(_ text: String) throws(ARMExpression.ParseError) -> ARMExpression {
        if let e = parseCache[text] { return e }
        let e = try ARMExpression.parse(text)
        parseCache[text] = e
        return e
    }

    // MARK: Copy loops

    /// ARM's limit on the instances of one copy loop.
    static let maximumCopyCount = 800

    /// A `copy` member that is a property (or variable) loop: an array of `{name, count, input}`.
    static func propertyLoops(_ node: SourceNode) -> [(name: String, count: SourceNode, input: SourceNode)]? {
        guard let elements = node.elements, !elements.isEmpty else { return nil }
        var loops: [(String, SourceNode, SourceNode)] = []
        for e in elements {
            guard let name = e.armMember("name")?.stringValue, let count = e.armMember("count"), let input = e.armMember("input") else { return nil }
            loops.append((name, count, input))
        }
        return loops
    }

    /// Each loop becomes a member holding `count` evaluations of its input, `copyIndex('name')` counting them.
    mutating func expandPropertyLoops(_ loops: [(name: String, count: SourceNode, input: SourceNode)]) throws -> [SourceNode.Member] {
        var out: [SourceNode.Member] = []
        for loop in loops {
            let items = try loopInstances(name: loop.name, count: loop.count) { e in try e.evaluateStrict(loop.input) }
            out.append(.init(key: loop.name, keyPosition: loop.input.position, value: SourceNode(.array(items), at: loop.input.position)))
        }
        return out
    }

    /// The loop's count, checked (0 to 800), then `body` once per index with `copyIndex()` set.
    /// Loop instances expanded so far in this deployment, and the limit (nested loops multiply).
    private var instances = 0
    static let maximumInstances = 100_000

    mutating func loopInstances(
        name: String, count countNode: SourceNode, isResourceLoop: Bool = false, _ body: (inout ARMEvaluator) throws -> SourceNode
    ) throws -> [SourceNode] {
        let count = try evaluateStrict(countNode)
        guard let n = count.intValue else { throw EvalError(message: "the count of copy loop '\(name)' must be an integer, found \(count.kindName)") }
        guard n >= 0, n <= Self.maximumCopyCount else {
            throw EvalError(message: "the count of copy loop '\(name)' is \(n); it must be between 0 and \(Self.maximumCopyCount)")
        }
        let key = name.lowercased()
        let saved = (copyIndexes[key], currentLoop)
        defer {
            copyIndexes[key] = saved.0
            currentLoop = saved.1
        }
        instances += n
        guard instances <= Self.maximumInstances else {
            throw EvalError(message: "copy loops expand to more than \(Self.maximumInstances) instances in this deployment")
        }
        var items: [SourceNode] = []
        for i in 0..<n {
            copyIndexes[key] = i
            // A bare copyIndex() means the resource loop; property and variable loops are named.
            if isResourceLoop { currentLoop = key }
            items.append(try body(&self))
        }
        return items
    }

    // MARK: Evaluate

    /// How deep evaluation may go (expressions within variables within lambdas…) before it is refused: a template
    /// must not be able to exhaust the stack of the thread that loads it.
    static let maximumEvaluationDepth = 800
    private var evaluationDepth = 0
    /// A budget of evaluation steps per deployment: a template cannot keep Kiln busy for ever (nested maps over
    /// ranges, strings that double in each variable).
    static let maximumSteps = 1_000_000
    private var steps = 0

    mutating func evaluate(_ e: ARMExpression) throws -> SourceNode {
        evaluationDepth += 1
        defer { evaluationDepth -= 1 }
        steps += 1
        guard steps <= Self.maximumSteps else {
            throw EvalError(message: "the template takes more than \(Self.maximumSteps) evaluation steps; Kiln stops it there")
        }
        guard evaluationDepth <= Self.maximumEvaluationDepth else {
            throw EvalError(
                message: "the evaluation nests deeper than \(Self.maximumEvaluationDepth) levels (variables or lambdas that refer to each other too deeply)")
        }
        switch e {
        case .string(let s): return .string(s)
        case .integer(let i): return .int(i)
        case .property(let base, let name):
            let b = try evaluate(base)
            guard let members = b.members else { throw EvalError(message: "cannot read property '\(name)' of \(b.kindName)") }
            guard let m = members.first(where: { $0.key.caseInsensitiveCompare(name) == .orderedSame }) else {
                throw EvalError(
                    message:
                        "the language expression property '\(name)' doesn't exist, available properties are \(members.map { "'\($0.key)'" }.joined(separator: ", "))"
                )
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
            case (.object, .string(let key)):
                guard let v = b.armMember(key) else { throw EvalError(message: "the language expression property '\(key)' doesn't exist") }
                return v
            default:
                throw EvalError(message: "cannot index \(b.kindName) with \(i.kindName)")
            }
        case .call(let name, let args):
            return try call(name, args)
        }
    }

    private mutating func call(_ name: String, _ args: [ARMExpression]) throws -> SourceNode {
        let fn = name.lowercased()
        if let special = try callSpecial(fn, name, args) { return special }
        if fn.contains(".") { return try callUserFunction(fn, name, args) }
        guard let pure = ARMFunctions.all[fn] else {
            if fn.hasPrefix("list") || ["references", "pickzones", "providers"].contains(fn) {
                throw EvalError(message: "\(name)() reads live Azure state, which Kiln has no access to")
            }
            throw EvalError(message: "'\(name)' is not an ARM template function")
        }
        var values: [SourceNode] = []
        for a in args { values.append(try evaluate(a)) }
        let result = try pure(ARMFunctions.Arguments(name: name, values: values))
        // ARM limits a deployment's expanded template to 4 MB: no value may grow past it (strings that double).
        switch result.value {
        case .string(let s) where s.utf8.count > Self.maximumStringBytes:
            throw EvalError(message: "\(name)() makes a string of \(s.utf8.count) bytes; ARM allows a template of at most 4 MB")
        case .array(let a) where a.count > Self.maximumArrayCount:
            throw EvalError(message: "\(name)() makes an array of \(a.count) elements, more than the \(Self.maximumArrayCount) Kiln allows")
        default:
            return result
        }
    }

    static let maximumStringBytes = 4 << 20
    static let maximumArrayCount = 100_000

    /// Functions that are lazy, take lambdas or read the deployment; nil for the others.
    private mutating func callSpecial(_ fn: String, _ name: String, _ args: [ARMExpression]) throws -> SourceNode? {
        func arity(_ range: ClosedRange<Int>) throws {
            try ARMFunctions.Arguments(name: name, values: Array(repeating: .null, count: args.count)).arity(range)
        }
        switch fn {
        case "parameters":
            try arity(1...1)
            let p = try stringArg(args[0], name)
            guard let v = parameters.first(where: { $0.key.caseInsensitiveCompare(p) == .orderedSame })?.value else {
                if failedParameters.contains(p.lowercased()) { throw AlreadyReported() }
                throw EvalError(message: "parameter '\(p)' is not defined in the template's parameters")
            }
            return v
        case "variables":
            try arity(1...1)
            guard allowVariables else { throw EvalError(message: "variables() cannot be used in a parameter's defaultValue") }
            return try variable(try stringArg(args[0], name))
        case "if":
            try arity(3...3)
            let c = try evaluate(args[0])
            guard let b = c.boolValue else { throw EvalError(message: "if() needs a boolean condition, found \(c.kindName)") }
            return try evaluate(b ? args[1] : args[2])
        case "and", "or":
            try arity(1...Int.max)
            for a in args {
                let v = try evaluate(a)
                guard let b = v.boolValue else { throw EvalError(message: "\(name)() takes booleans, found \(v.kindName)") }
                if b == (fn == "or") { return .bool(b) }
            }
            return .bool(fn == "and")
        case "lambda":
            throw EvalError(message: "lambda() can only be an argument of filter(), map(), reduce(), sort(), toObject(), mapValues() or groupBy()")
        case "lambdavariables":
            try arity(1...1)
            let v = try stringArg(args[0], name)
            for scope in lambdaScopes.reversed() {
                if let value = scope.first(where: { $0.key.caseInsensitiveCompare(v) == .orderedSame })?.value { return value }
            }
            throw EvalError(message: "lambdaVariables('\(v)') names no parameter of an enclosing lambda")
        case "map", "filter", "sort", "reduce", "toobject", "mapvalues", "groupby":
            return try callHigherOrder(fn, name, args)
        case "copyindex":
            try arity(0...2)
            var loop = currentLoop
            var offset = 0
            for a in args {
                let v = try evaluate(a)
                if let s = v.stringValue {
                    loop = s.lowercased()
                } else if let i = v.intValue {
                    offset = i
                } else {
                    throw EvalError(message: "copyIndex() takes a loop name and an offset, found \(v.kindName)")
                }
            }
            guard let loop, let i = copyIndexes[loop.lowercased()] else {
                throw EvalError(message: "copyIndex() is used outside a copy loop\(args.isEmpty ? "" : " of that name")")
            }
            let (sum, overflow) = i.addingReportingOverflow(offset)
            guard !overflow else { throw EvalError(message: "copyIndex(): the offset \(offset) overflows") }
            return .int(sum)
        case "utcnow":
            try arity(0...1)
            guard inParameterDefault else { throw EvalError(message: "utcNow() can only be used in a parameter's defaultValue") }
            guard !scope.refusesClock || scope.now != nil else {
                throw EvalError(
                    message:
                        "utcNow() would give a new value on every read of a GitOps repository (and so a new template each time); set this parameter in the parameters file"
                )
            }
            let format = args.isEmpty ? "yyyyMMddTHHmmssZ" : try stringArg(args[0], name)
            do { return .string(try ARMDates.format(scope.now ?? Date(), format)) } catch let e as ARMDates.FormatError {
                throw EvalError(message: "utcNow(): \(e.message)")
            }
        case "newguid":
            try arity(0...0)
            guard inParameterDefault else { throw EvalError(message: "newGuid() can only be used in a parameter's defaultValue") }
            newGuidCount += 1
            if let seed = scope.newGuidSeed { return .string(ARMHash.guid(["kiln-newGuid", seed, String(newGuidCount)])) }
            return .string(UUID().uuidString.lowercased())
        case "resourcegroup", "subscription", "tenant", "deployer", "environment", "deployment":
            try arity(0...0)
            return ARMContext.value(of: fn, scope)
        case "reference":
            try arity(1...3)
            return try reference(args)
        case "managementgroup":
            throw EvalError(message: "managementGroup() needs a management-group deployment; Kiln deploys to a resource group")
        case "resourceid", "subscriptionresourceid", "tenantresourceid", "managementgroupresourceid", "extensionresourceid":
            var strings: [String] = []
            for a in args { strings.append(try stringArg(a, name)) }
            return .string(try ARMContext.resourceId(fn, name, strings, scope: scope))
        default:
            return nil
        }
    }

    /// A resource this deployment declares, for `reference()`: its symbolic name (languageVersion 2.0), type and
    /// unevaluated body.
    struct DeclaredResource {
        var symbolicName: String?
        var type: String
        var node: SourceNode
    }

    /// The deployment's resources (set by the loader).
    var declaredResources: [DeclaredResource] = []
    /// References being evaluated (a resource whose properties refer to itself), and resources whose names are.
    private var referencing: Set<String> = []
    private var namingResources: Set<Int> = []

    /// `reference(symbolicNameOrId, [apiVersion], ['Full'])` of a resource of this template: its properties (or,
    /// with 'Full', the whole resource) as the template declares them, evaluated now. A resource outside the
    /// template, or state only Azure has (`principalId`, `provisioningState`), is not available offline.
    private mutating func reference(_ args: [ARMExpression]) throws -> SourceNode {
        let target = try stringArg(args[0], "reference")
        let full = args.count == 3 ? (try stringArg(args[2], "reference")).lowercased() == "full" : false
        var found: DeclaredResource?
        for (i, r) in declaredResources.enumerated() {
            if let s = r.symbolicName, s == target {
                found = r
                break
            }
            // By id: only resources of the id's type, and never one whose name is being worked out (its name may
            // itself call reference()).
            let parts = r.type.split(separator: "/").map(String.init)
            guard target.hasPrefix("/"), parts.count >= 2, let nameNode = r.node.armMember("name"),
                target.lowercased().contains("/providers/\(parts[0].lowercased())/\(parts[1].lowercased())/"), !namingResources.contains(i)
            else { continue }
            namingResources.insert(i)
            defer { namingResources.remove(i) }
            let name = try evaluateStrict(nameNode).armString
            let names = name.split(separator: "/").map(String.init)
            guard names.count == parts.count - 1 else { continue }
            var suffix = "/providers/\(parts[0])"
            for (t, n) in zip(parts.dropFirst(), names) { suffix += "/\(t)/\(n)" }
            if target.lowercased().hasSuffix(suffix.lowercased()) {
                found = r
                break
            }
        }
        guard let r = found else {
            throw EvalError(message: "reference('\(target)') names a resource outside this template: its state lives in Azure, which Kiln does not read")
        }
        let key = (r.symbolicName ?? target).lowercased()
        if let cached = referenceCache["\(key)\u{0}\(full)"] { return cached }
        guard !referencing.contains(key) else { throw EvalError(message: "reference('\(target)') refers to itself") }
        referencing.insert(key)
        defer { referencing.remove(key) }
        var members = (r.node.members ?? []).filter { !["dependson", "condition", "copy", "comments", "resources"].contains($0.key.lowercased()) }
        members = try members.map { .init(key: $0.key, keyPosition: $0.keyPosition, value: try evaluateStrict($0.value)) }
        let resource = SourceNode(.object(members))
        let result = full ? resource : resource.armMember("properties") ?? .object([])
        referenceCache["\(key)\u{0}\(full)"] = result
        return result
    }

    /// reference() results by target: a chain of references is evaluated once per resource, not once per path.
    private var referenceCache: [String: SourceNode] = [:]

    /// The lambda functions: the lambda argument is read as syntax (`lambda('x', body)`), its body evaluated once per element.
    private mutating func callHigherOrder(_ fn: String, _ name: String, _ args: [ARMExpression]) throws -> SourceNode {
        func lambda(_ e: ARMExpression, parameters range: ClosedRange<Int>) throws -> (names: [String], body: ARMExpression) {
            guard case .call(let n, let largs) = e, n.lowercased() == "lambda", largs.count >= 2 else {
                throw EvalError(message: "\(name)() needs a lambda('name', …, expression) argument")
            }
            var names: [String] = []
            for p in largs.dropLast() {
                guard case .string(let s) = p else { throw EvalError(message: "lambda() parameter names must be string literals") }
                names.append(s)
            }
            guard range.contains(names.count) else {
                throw EvalError(
                    message:
                        "the lambda of \(name)() takes \(range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) or \(range.upperBound)") parameters, found \(names.count)"
                )
            }
            return (names, largs.last!)
        }
        func apply(_ l: (names: [String], body: ARMExpression), _ values: [SourceNode]) throws -> SourceNode {
            var frame: [String: SourceNode] = [:]
            for (n, v) in zip(l.names, values) { frame[n] = v }
            lambdaScopes.append(frame)
            defer { lambdaScopes.removeLast() }
            return try evaluate(l.body)
        }
        func array(_ e: ARMExpression) throws -> [SourceNode] {
            let v = try evaluate(e)
            guard let a = v.elements else { throw EvalError(message: "\(name)() needs an array, found \(v.kindName)") }
            return a
        }
        switch fn {
        case "map":
            guard args.count == 2 else { throw EvalError(message: "map() takes an array and a lambda") }
            let items = try array(args[0]), l = try lambda(args[1], parameters: 1...2)
            return .array(try items.enumerated().map { try apply(l, [$0.element, .int($0.offset)]) })
        case "filter":
            guard args.count == 2 else { throw EvalError(message: "filter() takes an array and a lambda") }
            let items = try array(args[0]), l = try lambda(args[1], parameters: 1...2)
            var out: [SourceNode] = []
            for (i, item) in items.enumerated() {
                let keep = try apply(l, [item, .int(i)])
                guard let b = keep.boolValue else { throw EvalError(message: "the lambda of filter() must return a boolean, found \(keep.kindName)") }
                if b { out.append(item) }
            }
            return .array(out)
        case "sort":
            guard args.count == 2 else { throw EvalError(message: "sort() takes an array and a lambda") }
            let items = try array(args[0]), l = try lambda(args[1], parameters: 2...2)
            // Insertion sort: stable, and the comparator may throw.
            var out: [SourceNode] = []
            for item in items {
                var at = out.count
                while at > 0 {
                    let before = try apply(l, [item, out[at - 1]])
                    guard let b = before.boolValue else { throw EvalError(message: "the lambda of sort() must return a boolean, found \(before.kindName)") }
                    if !b { break }
                    at -= 1
                }
                out.insert(item, at: at)
            }
            return .array(out)
        case "reduce":
            guard args.count == 3 else { throw EvalError(message: "reduce() takes an array, an initial value and a lambda") }
            let items = try array(args[0])
            var acc = try evaluate(args[1])
            let l = try lambda(args[2], parameters: 2...3)
            for (i, item) in items.enumerated() { acc = try apply(l, [acc, item, .int(i)]) }
            return acc
        case "toobject":
            guard (2...3).contains(args.count) else { throw EvalError(message: "toObject() takes an array, a key lambda and an optional value lambda") }
            let items = try array(args[0]), key = try lambda(args[1], parameters: 1...1)
            let value = args.count == 3 ? try lambda(args[2], parameters: 1...1) : nil
            var pairs: [(String, SourceNode)] = []
            for item in items {
                let k = try apply(key, [item])
                guard let ks = k.stringValue else { throw EvalError(message: "the key lambda of toObject() must return a string, found \(k.kindName)") }
                let v = try value.map { try apply($0, [item]) } ?? item
                pairs.removeAll { $0.0.caseInsensitiveCompare(ks) == .orderedSame }
                pairs.append((ks, v))
            }
            return .object(pairs)
        case "mapvalues":
            guard args.count == 2 else { throw EvalError(message: "mapValues() takes an object and a lambda") }
            let o = try evaluate(args[0])
            guard let members = o.members else { throw EvalError(message: "mapValues() needs an object, found \(o.kindName)") }
            let l = try lambda(args[1], parameters: 1...1)
            return .object(try members.map { ($0.key, try apply(l, [$0.value])) })
        default:  // groupby
            guard args.count == 2 else { throw EvalError(message: "groupBy() takes an array and a lambda") }
            let items = try array(args[0]), l = try lambda(args[1], parameters: 1...1)
            var groups: [(String, [SourceNode])] = []
            for item in items {
                let k = try apply(l, [item])
                guard let ks = k.stringValue else { throw EvalError(message: "the lambda of groupBy() must return a string, found \(k.kindName)") }
                if let i = groups.firstIndex(where: { $0.0 == ks }) { groups[i].1.append(item) } else { groups.append((ks, [item])) }
            }
            return .object(groups.map { ($0.0, .array($0.1)) })
        }
    }

    /// `namespace.name(…)`: the output expression with the call's arguments as its only names (a user function sees
    /// no variables, other parameters or user functions).
    private mutating func callUserFunction(_ fn: String, _ name: String, _ args: [ARMExpression]) throws -> SourceNode {
        guard let f = userFunctions[fn] else { throw EvalError(message: "'\(name)' is not a user-defined function of this template") }
        guard f.parameters.count == args.count else {
            throw EvalError(message: "\(name)() takes \(f.parameters.count) argument\(f.parameters.count == 1 ? "" : "s"), found \(args.count)")
        }
        var values: [SourceNode] = []
        for a in args { values.append(try evaluate(a)) }
        var inner = ARMEvaluator(scope: scope)
        inner.allowVariables = false
        inner.parameters = Dictionary(zip(f.parameters, values), uniquingKeysWith: { a, _ in a })
        return try inner.evaluateStrict(f.output)
    }

    private mutating func stringArg(_ e: ARMExpression, _ fn: String) throws -> String {
        let v = try evaluate(e)
        switch v.value {
        case .string, .number, .bool: return v.armString
        default: throw EvalError(message: "\(fn)() expects a string argument, found \(v.kindName)")
        }
    }

    /// Variables made by `variables.copy` loops: their count and input, evaluated when first used.
    var variableLoops: [String: (count: SourceNode, input: SourceNode)] = [:]

    /// Evaluates `body` outside any copy loop or lambda: a variable means the same wherever it is used (ARM refuses
    /// copyIndex() in a variable outside its own copy loop), so its cached value never depends on who asked first.
    private mutating func inVariableContext<T>(_ body: (inout ARMEvaluator) throws -> T) rethrows -> T {
        let saved = (copyIndexes, currentLoop, lambdaScopes)
        copyIndexes = [:]
        currentLoop = nil
        lambdaScopes = []
        defer { (copyIndexes, currentLoop, lambdaScopes) = saved }
        return try body(&self)
    }

    private mutating func variable(_ name: String) throws -> SourceNode {
        if let loopKey = variableLoops.keys.first(where: { $0.caseInsensitiveCompare(name) == .orderedSame }), let loop = variableLoops[loopKey] {
            if let cached = variableCache[loopKey] { return cached }
            if evaluating.contains(loopKey) { throw EvalError(message: "variable '\(name)' refers to itself") }
            evaluating.insert(loopKey)
            defer { evaluating.remove(loopKey) }
            let value = try inVariableContext { v in
                SourceNode(.array(try v.loopInstances(name: loopKey, count: loop.count) { e in try e.evaluateStrict(loop.input) }))
            }
            variableCache[loopKey] = value
            return value
        }
        let key = variableDefinitions.keys.first { $0.caseInsensitiveCompare(name) == .orderedSame }
        guard let key, let def = variableDefinitions[key] else {
            throw EvalError(message: "variable '\(name)' is not defined in the template's variables")
        }
        if let cached = variableCache[key] { return cached }
        if evaluating.contains(key) { throw EvalError(message: "variable '\(name)' refers to itself") }
        evaluating.insert(key)
        defer { evaluating.remove(key) }
        // Variables are evaluated without a diagnostic sink of their own: an error inside one is reported
        // at the place that uses it.
        let value = try inVariableContext { v in try v.evaluateStrict(def) }
        variableCache[key] = value
        return value
    }
}
