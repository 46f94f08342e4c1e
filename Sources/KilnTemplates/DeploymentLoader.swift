import Foundation

/// Expands an ARM deployment template: resolves parameters (command line, then the parameters file,
/// then `defaultValue`), evaluates variables and expressions, and decodes each imageTemplates resource.
struct DeploymentLoader {
    let path: String
    let options: LoadOptions
    /// How deep inside nested deployments this template is.
    var depth = 0

    /// ARM's limits on a template.
    static let maximumParameters = 256, maximumVariables = 256, maximumResources = 800

    private static let imageTemplatesType = "microsoft.virtualmachineimages/imagetemplates"

    /// A value from the parameters file: the name as written, the value node, and where the name is.
    private typealias FileParameter = (name: String, node: SourceNode, keyPosition: SourcePosition)

    func load(_ root: SourceNode, parameters paramsFile: (path: String, text: String)?, into file: inout LoadedFile) {
        var fileValues: [String: FileParameter] = [:]
        var paramsCtx: DecodeContext?
        if let paramsFile {
            file.parametersFile = paramsFile.path
            let pctx = DecodeContext(sink: DiagnosticSink(file: paramsFile.path), apiVersion: .latest)
            paramsCtx = pctx
            fileValues = readParametersFile(paramsFile, ctx: pctx)
        }
        load(root, values: fileValues, paramsCtx: paramsCtx, into: &file)
    }

    /// Loads a template whose parameter values are given (from a parameters file, or a nested deployment's
    /// `properties.parameters`).
    private func load(_ root: SourceNode, values fileValues: [String: FileParameter], paramsCtx: DecodeContext?, into file: inout LoadedFile) {
        var sink = DiagnosticSink(file: path)
        guard let members = root.members else {
            sink.error(.invalidTemplate, "a deployment template must be a JSON object, found \(root.kindName)", at: .root, root.position)
            file.diagnostics = sink.items
            return
        }
        let ctx = DecodeContext(sink: sink, apiVersion: .latest)
        ctx.strict = false
        options.applyArtifactRules(to: ctx)
        var scope = options.scope
        if scope.deploymentName == nil { scope.deploymentName = TemplateLoader.baseName(path) }
        var eval = ARMEvaluator(scope: scope)
        eval.deploymentDepth = depth
        checkTopLevelMembers(members, ctx: ctx)
        for (section, limit) in [("parameters", Self.maximumParameters), ("variables", Self.maximumVariables), ("resources", Self.maximumResources)] {
            guard let n = root.member(caseInsensitive: section), let count = n.members?.count ?? n.elements?.count, count > limit else { continue }
            ctx.error(.invalidTemplate, "the template has \(count) \(section); ARM allows at most \(limit)", JSONPath.root / section, n.position)
            file.diagnostics = ctx.sink.items
            return
        }
        collectFunctions(root, eval: &eval, ctx: ctx)

        let types = ARMTypes(definitions: root.member(caseInsensitive: "definitions"))
        resolveParameters(root, fileValues: fileValues, paramsCtx: paramsCtx, types: types, eval: &eval, ctx: ctx)
        collectVariables(root, eval: &eval, ctx: ctx)
        let resources = collectResources(root, ctx: ctx)
        eval.declaredResources = resources.map { r in
            let symbolic: String? = if case .key(let k) = r.path.components.last, r.path.components.count == 2 { k } else { nil }
            return ARMEvaluator.DeclaredResource(symbolicName: symbolic, type: r.node.member(caseInsensitive: "type")?.stringValue ?? "", node: r.node)
        }

        // A problem with parameters or variables fails the whole deployment, as in ARM, which validates parameters
        // before it looks at resources: their consequences there would only repeat the cause.
        let deploymentInvalid = ctx.sink.hasErrors || (paramsCtx?.sink.hasErrors ?? false)
        if !eval.failedParameters.isEmpty {
            file.diagnostics = ctx.sink.items + (paramsCtx?.sink.items ?? [])
            return
        }
        var names: [String: JSONPath] = [:]
        for (node, rpath) in resources {
            if let copy = node.member(caseInsensitive: "copy") {
                loadCopies(of: node, copy: copy, path: rpath, names: &names, eval: &eval, ctx: ctx, into: &file)
            } else {
                loadResource(node, path: rpath, names: &names, eval: &eval, ctx: ctx, into: &file)
            }
        }
        // A deployment is all or nothing, as in ARM: any error (a duplicate name from a copy loop, a bad template) deploys none.
        if deploymentInvalid || ctx.sink.hasErrors { file.templates.removeAll() }
        file.diagnostics = ctx.sink.items + (paramsCtx?.sink.items ?? [])
    }

    /// Warns about top-level properties Kiln ignores (user-defined functions, unknown keys).
    private func checkTopLevelMembers(_ members: [SourceNode.Member], ctx: DecodeContext) {
        for m in members {
            switch m.key.lowercased() {
            case "$schema", "contentversion", "apiprofile", "parameters", "variables", "resources", "outputs", "metadata", "languageversion", "definitions":
                break
            case "functions":
                break
            default:
                ctx.warning(.invalidTemplate, "unknown deployment template property '\(m.key)' is ignored", JSONPath.root / m.key, m.keyPosition)
            }
        }
    }

    /// The parameters in an order where each default comes after the parameters it reads (declaration order
    /// otherwise), and the first cycle of defaults found (lower-cased names), whose members are left out.
    static func resolutionOrder(
        _ decls: [SourceNode.Member], supplied: (String) -> Bool
    ) -> (ordered: [SourceNode.Member], cycle: [String]?) {
        let byName = Dictionary(decls.map { ($0.key.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        func reads(_ d: SourceNode.Member) -> [String] {
            guard !supplied(d.key.lowercased()), let def = d.value.member(caseInsensitive: "defaultValue") else { return [] }
            return parameterReferences(in: def).filter { byName[$0] != nil }
        }
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var ordered: [SourceNode.Member] = []
        var cycle: [String]?
        var stack: [String] = []
        func visit(_ n: String) {
            if state[n] == 2 { return }
            if state[n] == 1 {
                if cycle == nil, let i = stack.firstIndex(of: n) { cycle = Array(stack[i...]) }
                return
            }
            state[n] = 1
            stack.append(n)
            for m in reads(byName[n]!) { visit(m) }
            stack.removeLast()
            state[n] = 2
            if !(cycle?.contains(n) ?? false) { ordered.append(byName[n]!) }
        }
        for d in decls { visit(d.key.lowercased()) }
        return (ordered, cycle)
    }

    /// The names (lower-cased) of `parameters('…')` calls with a literal name anywhere in `node`'s expressions.
    static func parameterReferences(in node: SourceNode) -> [String] {
        func walk(_ e: ARMExpression, _ out: inout [String]) {
            switch e {
            case .string, .integer: break
            case .property(let b, _): walk(b, &out)
            case .index(let b, let i):
                walk(b, &out)
                walk(i, &out)
            case .call(let name, let args):
                if name.lowercased() == "parameters", args.count == 1, case .string(let p) = args[0] { out.append(p.lowercased()) }
                for a in args { walk(a, &out) }
            }
        }
        var out: [String] = []
        switch node.value {
        case .string(let s):
            if ARMExpression.isExpression(s), let e = try? ARMExpression.parse(s) { walk(e, &out) }
        case .array(let elements):
            for e in elements { out += parameterReferences(in: e) }
        case .object(let members):
            for m in members {
                out += parameterReferences(in: SourceNode(.string(m.key)))
                out += parameterReferences(in: m.value)
            }
        default:
            break
        }
        return out
    }

    /// User-defined functions (`functions: [{namespace, members: {name: {parameters, output}}}]`), called as
    /// `namespace.name(…)`.
    private func collectFunctions(_ root: SourceNode, eval: inout ARMEvaluator, ctx: DecodeContext) {
        guard let fs = root.member(caseInsensitive: "functions") else { return }
        let base = JSONPath.root / "functions"
        guard let list = fs.elements else {
            ctx.error(.invalidTemplate, "functions must be an array of namespaces, found \(fs.kindName)", base, fs.position)
            return
        }
        for (i, ns) in list.enumerated() {
            guard let namespace = ns.member(caseInsensitive: "namespace")?.stringValue, let members = ns.member(caseInsensitive: "members")?.members else {
                ctx.error(.invalidTemplate, "a function namespace needs 'namespace' (a string) and 'members' (an object)", base / i, ns.position)
                continue
            }
            for m in members {
                let p = base / i / "members" / m.key
                guard let output = m.value.member(caseInsensitive: "output")?.member(caseInsensitive: "value") else {
                    ctx.error(.invalidTemplate, "function '\(namespace).\(m.key)' needs output.value", p, m.value.position)
                    continue
                }
                let names = (m.value.member(caseInsensitive: "parameters")?.elements ?? []).compactMap { $0.member(caseInsensitive: "name")?.stringValue }
                eval.userFunctions["\(namespace).\(m.key)".lowercased()] = ARMEvaluator.UserFunction(parameters: names, output: output)
            }
        }
    }

    /// Resolves the declared parameters in declaration order (defaults may refer to earlier ones) into `eval`,
    /// then reports values from the parameters file or the command line for parameters that are not declared.
    private func resolveParameters(
        _ root: SourceNode, fileValues: [String: FileParameter], paramsCtx: DecodeContext?, types: ARMTypes,
        eval: inout ARMEvaluator, ctx: DecodeContext
    ) {
        let declared = root.member(caseInsensitive: "parameters")
        var declaredNames: Set<String> = []
        if let declared {
            if let decls = declared.members {
                eval.allowVariables = false
                declaredNames = Set(decls.map { $0.key.lowercased() })
                let (ordered, cycle) = Self.resolutionOrder(
                    decls, supplied: { n in fileValues[n] != nil || options.parameters.keys.contains { $0.lowercased() == n } })
                if let cycle, let first = decls.first(where: { $0.key.lowercased() == cycle[0] }) {
                    let names = cycle.map { c in decls.first { $0.key.lowercased() == c }?.key ?? c }
                    ctx.error(
                        .invalidTemplate,
                        "the defaultValues of parameters \((names + [names[0]]).map { "'\($0)'" }.joined(separator: " → ")) refer to each other in a cycle",
                        JSONPath.root / "parameters" / first.key / "defaultValue",
                        first.value.member(caseInsensitive: "defaultValue")?.position ?? first.keyPosition)
                    for c in cycle { eval.failedParameters.insert(c) }
                }
                for d in ordered {
                    let p = JSONPath.root / "parameters" / d.key
                    if let v = resolveParameter(
                        d, path: p, fileValue: fileValues[d.key.lowercased()].map { ($0.node, $0.keyPosition) }, types: types, eval: &eval, ctx: ctx)
                    {
                        eval.parameters[d.key] = v
                    } else {
                        eval.failedParameters.insert(d.key.lowercased())
                    }
                }
                eval.allowVariables = true
            } else {
                ctx.error(.invalidTemplate, "parameters must be an object, found \(declared.kindName)", JSONPath.root / "parameters", declared.position)
            }
        }
        for (key, v) in fileValues.sorted(by: { $0.key < $1.key }) where !declaredNames.contains(key) {
            paramsCtx?.error(
                .invalidTemplate, "parameter '\(v.name)' is not declared in the template \((path as NSString).lastPathComponent)",
                JSONPath.root / "parameters" / v.name, v.keyPosition)
        }
        for name in options.parameters.keys where !declaredNames.contains(name.lowercased()) {
            ctx.error(
                .invalidTemplate, "parameter '\(name)' given on the command line is not declared in the template", JSONPath.root / "parameters",
                declared?.position ?? root.position)
        }
    }

    /// Hands the variable definitions (unevaluated) to `eval`; variable copy loops are reported.
    private func collectVariables(_ root: SourceNode, eval: inout ARMEvaluator, ctx: DecodeContext) {
        guard let vars = root.member(caseInsensitive: "variables") else { return }
        guard let vm = vars.members else {
            ctx.error(.invalidTemplate, "variables must be an object, found \(vars.kindName)", JSONPath.root / "variables", vars.position)
            return
        }
        for v in vm {
            if v.key.lowercased() == "copy" {
                guard let loops = ARMEvaluator.propertyLoops(v.value) else {
                    ctx.error(
                        .invalidTemplate, "variables.copy must be an array of {name, count, input}", JSONPath.root / "variables" / v.key, v.keyPosition)
                    continue
                }
                for l in loops { eval.variableLoops[l.name] = (l.count, l.input) }
                continue
            }
            eval.variableDefinitions[v.key] = v.value
        }
    }

    /// The entries of `resources` with their paths: an array, or (languageVersion 2.0) an object keyed by symbolic name.
    private func collectResources(_ root: SourceNode, ctx: DecodeContext) -> [(node: SourceNode, path: JSONPath)] {
        guard let r = root.member(caseInsensitive: "resources") else {
            ctx.error(.invalidTemplate, "a deployment template needs 'resources'", JSONPath.root / "resources", root.position)
            return []
        }
        if let elements = r.elements {
            return elements.enumerated().map { ($0.element, JSONPath.root / "resources" / $0.offset) }
        } else if let named = r.members {
            // languageVersion 2.0: resources keyed by symbolic name.
            return named.map { ($0.value, JSONPath.root / "resources" / $0.key) }
        }
        ctx.error(.invalidTemplate, "resources must be an array, found \(r.kindName)", JSONPath.root / "resources", r.position)
        return []
    }

    /// The value with every object member whose value is null removed, at any depth (array elements stay).
    static func droppingNulls(_ node: SourceNode) -> SourceNode {
        switch node.value {
        case .object(let members):
            let kept = members.filter { !$0.value.isNull }.map { SourceNode.Member(key: $0.key, keyPosition: $0.keyPosition, value: droppingNulls($0.value)) }
            return SourceNode(.object(kept), at: node.position)
        case .array(let elements):
            return SourceNode(.array(elements.map(droppingNulls)), at: node.position)
        default:
            return node
        }
    }

    /// A resource `copy {name, count}` loop: `count` instances (0 to 800), each loaded with `copyIndex()` at its index.
    private func loadCopies(
        of node: SourceNode, copy: SourceNode, path rpath: JSONPath, names: inout [String: JSONPath], eval: inout ARMEvaluator,
        ctx: DecodeContext, into file: inout LoadedFile, target: DeploymentScope? = nil
    ) {
        guard let loopName = copy.armMember("name")?.stringValue, let countNode = copy.armMember("count") else {
            ctx.error(.invalidTemplate, "a resource copy loop needs 'name' (a string) and 'count'", rpath / "copy", copy.position)
            return
        }
        let instance = SourceNode(.object((node.members ?? []).filter { $0.key.lowercased() != "copy" }), at: node.position)
        var failure: (String, SourcePosition)?
        do {
            _ = try eval.loopInstances(name: loopName, count: countNode, isResourceLoop: true) { e in
                loadResource(instance, path: rpath, names: &names, eval: &e, ctx: ctx, into: &file, target: target)
                return .null
            }
        } catch let e as ARMEvaluator.EvalError {
            failure = (e.message, countNode.position)
        } catch is ARMEvaluator.AlreadyReported {
        } catch {
            failure = ("\(error)", countNode.position)
        }
        if let (message, position) = failure { ctx.error(.invalidTemplate, message, rpath / "copy" / "count", position) }
    }

    /// Expands and decodes one resource. A template is added to `file` only when it decoded without new
    /// errors and its name is not taken; resources Kiln does not handle are recorded as skipped.
    /// - Parameter target: where the resource is deployed when that is not this deployment's scope (a nested
    ///   deployment in `outer` scope evaluates with the parent's functions but deploys into its own resource group).
    private func loadResource(
        _ node: SourceNode, path rpath: JSONPath, names: inout [String: JSONPath], eval: inout ARMEvaluator,
        ctx: DecodeContext, into file: inout LoadedFile, target: DeploymentScope? = nil
    ) {
        let errorsBefore = ctx.sink.items.filter { $0.severity == .error }.count
        let nameNode = node.member(caseInsensitive: "name")
        guard let evaluated = expandResource(node, path: rpath, nameNode: nameNode, names: &names, eval: &eval, ctx: ctx, into: &file) else { return }

        var vsink = DiagnosticSink(file: path)
        let version = TemplateLoader.apiVersion(of: evaluated, path: rpath, sink: &vsink)
        ctx.sink.append(contentsOf: vsink.items)
        let rctx = ctx.resourceContext(apiVersion: version)
        let (template, status) = TemplateDecoder(ctx: rctx).decodeResource(evaluated, path: rpath, fallbackName: nil)
        ctx.sink = rctx.sink
        ctx.suppressed = rctx.suppressed
        guard let template, ctx.sink.items.filter({ $0.severity == .error }).count == errorsBefore else { return }
        if let first = names[template.name.lowercased()] {
            ctx.error(
                .invalidTemplate, "the template '\(template.name)' is declared twice (also at \(first))", rpath / "name", nameNode?.position ?? node.position)
            return
        }
        names[template.name.lowercased()] = rpath
        loadChildren(of: node, path: rpath, template: template.name, eval: &eval, ctx: ctx, into: &file)
        file.templates.append(
            TemplateLoader.makeLoaded(
                template, status: status, version: version, scope: target ?? options.scope, path: rpath, line: node.position.line,
                artifactLines: rctx.artifactLines))
    }

    /// The imageTemplates resource with its expressions evaluated and deployment-only properties removed, or nil
    /// when it is skipped (another type, a false condition) or cannot be expanded (not an object, a copy loop).
    private func expandResource(
        _ node: SourceNode, path rpath: JSONPath, nameNode: SourceNode?, names: inout [String: JSONPath], eval: inout ARMEvaluator,
        ctx: DecodeContext, into file: inout LoadedFile
    ) -> SourceNode? {
        guard var rmembers = node.members else {
            ctx.error(.invalidTemplate, "a resource must be an object, found \(node.kindName)", rpath, node.position)
            return nil
        }
        let typeText = node.member(caseInsensitive: "type")?.stringValue ?? ""
        // `existing: true` (languageVersion 2.0) reads a resource that is there already; nothing is deployed.
        if node.member(caseInsensitive: "existing")?.boolValue == true { return nil }
        if typeText.lowercased() == TriggerResource.resourceType.lowercased() {
            loadTrigger(node, path: rpath, template: nil, eval: &eval, ctx: ctx, into: &file)
            return nil
        }
        if typeText.lowercased() == "microsoft.resources/deployments",
            let inner = node.member(caseInsensitive: "properties")?.member(caseInsensitive: "template")
        {
            loadNestedDeployment(node, template: inner, path: rpath, names: &names, eval: &eval, ctx: ctx, into: &file)
            return nil
        }
        if typeText.lowercased() == "microsoft.compute/galleries/images" {
            loadGalleryDefinition(node, path: rpath, eval: &eval, ctx: ctx, into: &file)
            return nil
        }
        if typeText.lowercased() != Self.imageTemplatesType {
            // A resource whose condition is false is not part of the deployment (a condition Kiln cannot evaluate, e.g. one
            // reading runtime state, leaves it listed as skipped).
            if let cond = node.member(caseInsensitive: "condition"), (try? eval.evaluateStrict(cond))?.boolValue == false { return nil }
            var name = nameNode?.stringValue
            if let n = name, ARMExpression.isExpression(n) {
                name = (try? eval.evaluateStrict(nameNode!))?.stringValue ?? n
            }
            var reason =
                typeText.lowercased() == "microsoft.resources/deployments"
                ? "its template is linked (templateLink), and Kiln reads only inline nested templates"
                : "Kiln handles only Microsoft.VirtualMachineImages/imageTemplates"
            if let (at, expression) = Self.runtimeState(in: node, path: rpath) {
                reason += "; its \(at) is runtime state of Azure (\(expression)), which Kiln neither creates nor reads"
            }
            file.skipped.append(
                SkippedResource(path: rpath.description, line: node.position.line, type: typeText.isEmpty ? "(no type)" : typeText, name: name, reason: reason))
            ctx.warning(
                .invalidTemplate, "skipped resource of type '\(typeText.isEmpty ? "(no type)" : typeText)'\(name.map { " '\($0)'" } ?? ""): \(reason)", rpath,
                node.position)
            return nil
        }
        if let cond = node.member(caseInsensitive: "condition") {
            let v = eval.evaluateTree(cond, path: rpath / "condition", ctx: ctx)
            if case .bool(false) = v.value {
                file.skipped.append(
                    SkippedResource(
                        path: rpath.description, line: node.position.line, type: typeText, name: nameNode?.stringValue, reason: "condition is false"))
                return nil
            }
        }
        // dependsOn has no meaning for a single template; child resources (triggers) are read after it.
        rmembers.removeAll { ["dependson", "condition", "resources"].contains($0.key.lowercased()) }
        // `null` means "not set" in ARM: a template built from nullable parameters leaves those properties out.
        return Self.droppingNulls(eval.evaluateTree(SourceNode(.object(rmembers), at: node.position), path: rpath, ctx: ctx))
    }

    /// A nested `Microsoft.Resources/deployments` with an inline `template`. With `expressionEvaluationOptions.scope`
    /// `outer` (the classic default) its resources are read with this deployment's parameters and variables; with
    /// `inner` (the default of a languageVersion 2.0 template) it is a deployment of its own whose parameter values
    /// are its `properties.parameters`, evaluated here. Its `resourceGroup` moves what it declares there.
    private func loadNestedDeployment(
        _ node: SourceNode, template inner: SourceNode, path rpath: JSONPath, names: inout [String: JSONPath], eval: inout ARMEvaluator,
        ctx: DecodeContext, into file: inout LoadedFile
    ) {
        if let cond = node.member(caseInsensitive: "condition"), case .bool(false) = eval.evaluateTree(cond, path: rpath / "condition", ctx: ctx).value {
            return
        }
        let props = node.member(caseInsensitive: "properties")!
        let base = rpath / "properties" / "template"
        var scope = eval.scope
        for (key, apply) in [
            ("resourceGroup", { (s: inout DeploymentScope, v: String) in s.resourceGroup = v }), ("subscriptionId", { $0.subscriptionId = $1 })
        ] {
            guard let n = node.member(caseInsensitive: key) else { continue }
            guard let v = eval.evaluateTree(n, path: rpath / key, ctx: ctx).stringValue else { return }
            apply(&scope, v)
        }
        if let name = node.member(caseInsensitive: "name").flatMap({ eval.evaluateTree($0, path: rpath / "name", ctx: ctx).stringValue }) {
            scope.deploymentName = name
        }
        let written = props.member(caseInsensitive: "expressionEvaluationOptions")?.member(caseInsensitive: "scope")?.stringValue?.lowercased()
        let isV2 = inner.member(caseInsensitive: "languageVersion")?.stringValue?.hasPrefix("2") ?? false
        guard eval.deploymentDepth < 10 else {
            ctx.error(.invalidTemplate, "nested deployments go deeper than 10 levels", rpath, node.position)
            return
        }
        if (written ?? (isV2 ? "inner" : "outer")) == "outer" {
            // Outer scope: the parent's parameters, variables and context functions; the resources go where the nested
            // deployment points.
            eval.deploymentDepth += 1
            defer { eval.deploymentDepth -= 1 }
            let nested = inner.member(caseInsensitive: "resources")
            let entries: [(SourceNode, JSONPath)] =
                nested?.elements?.enumerated().map { ($0.element, base / "resources" / $0.offset) }
                ?? nested?.members?.map { ($0.value, base / "resources" / $0.key) } ?? []
            for (r, p) in entries {
                if let copy = r.member(caseInsensitive: "copy") {
                    loadCopies(of: r, copy: copy, path: p, names: &names, eval: &eval, ctx: ctx, into: &file, target: scope)
                } else {
                    loadResource(r, path: p, names: &names, eval: &eval, ctx: ctx, into: &file, target: scope)
                }
            }
            return
        }
        // Inner: the values, evaluated here, are the nested deployment's parameter values (literal there).
        var values: [String: FileParameter] = [:]
        if let given = props.member(caseInsensitive: "parameters") {
            let evaluated = eval.evaluateTree(given, path: rpath / "properties" / "parameters", ctx: ctx)
            for m in evaluated.members ?? [] {
                guard let v = m.value.member(caseInsensitive: "value") else {
                    ctx.error(
                        .invalidTemplate, "nested deployment parameter '\(m.key)' needs a 'value'", rpath / "properties" / "parameters" / m.key, m.keyPosition)
                    continue
                }
                values[m.key.lowercased()] = (m.key, v, m.keyPosition)
            }
        }
        var nestedOptions = options
        nestedOptions.scope = scope
        nestedOptions.parameters = [:]
        var nested = LoadedFile(path: path)
        var loader = DeploymentLoader(path: path, options: nestedOptions)
        loader.depth = eval.deploymentDepth + 1
        loader.load(inner, values: values, paramsCtx: nil, into: &nested)
        for var d in nested.diagnostics {
            d.path = JSONPath(base.components + d.path.components)
            ctx.sink.append(contentsOf: [d])
        }
        for var t in nested.templates {
            t.resourcePath = JSONPath(base.components + t.resourcePath.components)
            if let first = names[t.template.name.lowercased()] {
                ctx.error(.invalidTemplate, "the template '\(t.template.name)' is declared twice (also at \(first))", t.resourcePath / "name", node.position)
                continue
            }
            names[t.template.name.lowercased()] = t.resourcePath
            file.templates.append(t)
        }
        file.skipped += nested.skipped.map { s in
            var s = s
            s.path = base.description + s.path.dropFirst()
            return s
        }
        file.triggers += nested.triggers
        file.galleryDefinitions += nested.galleryDefinitions
    }

    /// A gallery image definition declared beside the templates: created as Kiln's own, the way `galleries/*.yaml`
    /// files are. Properties Kiln has no use for (`recommended`, `purchasePlan`, `features`, …) are left out.
    private func loadGalleryDefinition(_ node: SourceNode, path rpath: JSONPath, eval: inout ARMEvaluator, ctx: DecodeContext, into file: inout LoadedFile) {
        if let cond = node.member(caseInsensitive: "condition"), case .bool(false) = eval.evaluateTree(cond, path: rpath / "condition", ctx: ctx).value {
            return
        }
        let errorsBefore = ctx.sink.items.filter { $0.severity == .error }.count
        let evaluated = eval.evaluateTree(node, path: rpath, ctx: ctx)
        guard ctx.sink.items.filter({ $0.severity == .error }).count == errorsBefore, var members = evaluated.members else { return }
        let used: Set<String> = ["osType", "osState", "hyperVGeneration", "identifier", "description", "endOfLifeDate"].reduce(into: []) {
            $0.insert($1.lowercased())
        }
        members = members.filter { ["type", "apiversion", "name", "location", "properties"].contains($0.key.lowercased()) }
        if let i = members.firstIndex(where: { $0.key.lowercased() == "properties" }), let props = members[i].value.members {
            members[i].value = SourceNode(.object(props.filter { used.contains($0.key.lowercased()) }), at: members[i].value.position)
        }
        var sink = DiagnosticSink(file: path)
        let definition = GalleryImageDefinition.decode(SourceNode(.object(members), at: node.position), scope: options.scope, sink: &sink)
        // The decoder reads a resource at the root of its own file; here it sits at `rpath`.
        for var d in sink.items {
            d.path = JSONPath(rpath.components + d.path.components)
            ctx.sink.append(contentsOf: [d])
        }
        if let definition { file.galleryDefinitions.append(definition) }
    }

    /// The first place in a resource that reads what only a real Azure deployment has (`reference()` of a resource,
    /// `list*()`), and the expression: a skipped resource that does so is reported, not evaluated.
    static func runtimeState(in node: SourceNode, path: JSONPath) -> (JSONPath, String)? {
        func reads(_ e: ARMExpression) -> Bool {
            switch e {
            case .string, .integer: return false
            case .property(let b, _): return reads(b)
            case .index(let b, let i): return reads(b) || reads(i)
            case .call(let name, let args):
                let n = name.lowercased()
                return n == "reference" || n == "references" || (n.hasPrefix("list") && n.count > 4) || args.contains(where: reads)
            }
        }
        switch node.value {
        case .string(let s):
            guard ARMExpression.isExpression(s), let e = try? ARMExpression.parse(s), reads(e) else { return nil }
            return (path, s)
        case .array(let elements):
            for (i, e) in elements.enumerated() { if let found = runtimeState(in: e, path: path / i) { return found } }
        case .object(let members):
            for m in members where m.key.lowercased() != "dependson" { if let found = runtimeState(in: m.value, path: path / m.key) { return found } }
        default:
            break
        }
        return nil
    }

    /// An image template's child resources: its trigger (`type: triggers`, named by itself); anything else is
    /// reported and ignored.
    private func loadChildren(
        of node: SourceNode, path rpath: JSONPath, template: String, eval: inout ARMEvaluator, ctx: DecodeContext, into file: inout LoadedFile
    ) {
        guard let children = node.member(caseInsensitive: "resources") else { return }
        guard let elements = children.elements else {
            ctx.error(.invalidTemplate, "resources must be an array, found \(children.kindName)", rpath / "resources", children.position)
            return
        }
        for (i, child) in elements.enumerated() {
            let type = child.member(caseInsensitive: "type")?.stringValue?.lowercased() ?? ""
            if type == "triggers" || type == TriggerResource.resourceType.lowercased() {
                loadTrigger(child, path: rpath / "resources" / i, template: template, eval: &eval, ctx: ctx, into: &file)
            } else {
                ctx.warning(.invalidTemplate, "child resource of type '\(type)' of an image template is ignored", rpath / "resources" / i, child.position)
            }
        }
    }

    /// A trigger resource, top level (named `TEMPLATE/NAME`) or a template's child (named `NAME`), with its
    /// expressions evaluated.
    private func loadTrigger(
        _ node: SourceNode, path rpath: JSONPath, template: String?, eval: inout ARMEvaluator, ctx: DecodeContext, into file: inout LoadedFile
    ) {
        guard var members = node.members else {
            ctx.error(.invalidTemplate, "a resource must be an object, found \(node.kindName)", rpath, node.position)
            return
        }
        if let cond = node.member(caseInsensitive: "condition"), case .bool(false) = eval.evaluateTree(cond, path: rpath / "condition", ctx: ctx).value {
            return
        }
        members.removeAll { ["dependson", "condition"].contains($0.key.lowercased()) }
        let evaluated = eval.evaluateTree(SourceNode(.object(members), at: node.position), path: rpath, ctx: ctx)
        var sink = ctx.sink
        if var trigger = TriggerResource.decode(evaluated, path: rpath, fileTemplate: template, sink: &sink) {
            trigger.scope = options.scope
            file.triggers.append(trigger)
        }
        ctx.sink = sink
    }

    /// `{"parameters": {"name": {"value": ...}}}`, names lower-cased.
    private func readParametersFile(_ pf: (path: String, text: String), ctx: DecodeContext) -> [String: FileParameter] {
        let root: SourceNode
        do {
            root = try TemplateLoader.parse(pf.text, format: TemplateLoader.format(forPath: pf.path) ?? .json)
        } catch {
            ctx.error(.invalidRequestContent, "cannot parse the parameters file: \(error.message)", .root, error.position)
            return [:]
        }
        guard let params = root.member(caseInsensitive: "parameters") else {
            ctx.error(.invalidTemplate, "a parameters file needs a 'parameters' object", .root, root.position)
            return [:]
        }
        guard let members = params.members else {
            ctx.error(.invalidTemplate, "parameters must be an object, found \(params.kindName)", JSONPath.root / "parameters", params.position)
            return [:]
        }
        var out: [String: FileParameter] = [:]
        for m in members {
            let p = JSONPath.root / "parameters" / m.key
            if m.value.member(caseInsensitive: "reference") != nil {
                ctx.error(
                    .invalidTemplate, "Key Vault references are not supported; pass the value with --parameter \(m.key)=VALUE", p / "reference",
                    m.value.position)
                continue
            }
            guard let v = m.value.member(caseInsensitive: "value") else {
                ctx.error(.invalidTemplate, "parameter '\(m.key)' needs a 'value'", p, m.value.position)
                continue
            }
            out[m.key.lowercased()] = (m.key, v, m.keyPosition)
        }
        return out
    }

    private func resolveParameter(
        _ d: SourceNode.Member, path: JSONPath, fileValue: (node: SourceNode, keyPosition: SourcePosition)?, types: ARMTypes,
        eval: inout ARMEvaluator, ctx: DecodeContext
    ) -> SourceNode? {
        guard let decl = d.value.members.map({ SourceNode(.object($0), at: d.value.position) }) else {
            ctx.error(.invalidTemplate, "the declaration of parameter '\(d.key)' must be an object with a 'type'", path, d.value.position)
            return nil
        }
        if let ref = types.danglingReference(in: decl) {
            ctx.error(.invalidTemplate, "parameter '\(d.key)' refers to '\(ref)', which is not in the template's definitions", path / "$ref", decl.position)
            return nil
        }
        guard let typeText = types.type(of: decl) else {
            ctx.error(.invalidTemplate, "parameter '\(d.key)' has no 'type'", path / "type", decl.position)
            return nil
        }
        let known = ARMTypes.typeNames
        guard known.contains(typeText) else {
            ctx.error(
                .invalidTemplate, "parameter '\(d.key)' has unknown type '\(typeText)'; expected one of \(known.joined(separator: ", "))", path / "type",
                decl.position)
            return nil
        }
        var value: SourceNode?
        var where_ = ""
        if let cli = options.parameters.first(where: { $0.key.lowercased() == d.key.lowercased() })?.value {
            where_ = "--parameter \(d.key)"
            if typeText == "string" || typeText == "securestring" {
                value = SourceNode(.string(cli), at: d.keyPosition)
            } else if let parsed = try? JSONSourceParser.parse(cli) {
                value = SourceNode(parsed.value, at: d.keyPosition)
            } else {
                ctx.error(.invalidTemplate, "the command-line value of parameter '\(d.key)' is not valid JSON for type \(typeText)", path, d.keyPosition)
                return nil
            }
        } else if let fv = fileValue {
            // Values from a parameters file are literal, never expressions (ARM).
            where_ = "the parameters file"
            value = fv.node
        } else if let def = decl.member(caseInsensitive: "defaultValue") {
            where_ = "defaultValue"
            eval.inParameterDefault = true
            value = eval.evaluateTree(def, path: path / "defaultValue", ctx: ctx)
            eval.inParameterDefault = false
            if ctx.isSuppressed(value!) { return nil }
        }
        // A nullable parameter nobody gives a value is null (languageVersion 2.0).
        if value == nil, types.isNullable(decl) {
            where_ = "no value (nullable)"
            value = SourceNode(.null, at: d.keyPosition)
        }
        guard let value else {
            let file = TemplateLoader.siblingParametersPath(for: self.path)
            ctx.error(
                .invalidTemplate,
                "no value for parameter '\(d.key)': give it a defaultValue, set it in \((file as NSString).lastPathComponent), or pass --parameter \(d.key)=VALUE",
                path, d.keyPosition)
            return nil
        }
        if !value.isNull, ARMTypes.kindMismatch(value, typeText) != nil {
            ctx.error(.invalidTemplate, "parameter '\(d.key)' is declared \(typeText) but \(where_) gives \(value.kindName)", path, d.keyPosition)
            return nil
        }
        if let problem = types.check(value, decl) {
            // A secure value is never repeated in a message.
            let shown = typeText.hasPrefix("secure") ? "it breaks the declared constraints (a secure value, not shown)" : problem
            ctx.error(.invalidTemplate, "the value of parameter '\(d.key)' from \(where_) is not valid: \(shown)", path, d.keyPosition)
            return nil
        }
        return value
    }
}
