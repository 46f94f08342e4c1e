/// Template bodies of the REST API.
extension TemplateLoader {
    /// A PUT body: a bare imageTemplates resource. Its name is the URL's (a `name` in the body is read-only and
    /// ignored, as ARM does), and its rules are those of the request's api-version, not of anything in the body.
    /// `path` names the body in diagnostics (the request path); `options` give the scope and the artifact rules.
    public static func loadRequestBody(_ text: String, name: String, apiVersion: APIVersion, options: LoadOptions, path: String) -> LoadedFile {
        var file = LoadedFile(path: path)
        file.kind = .imageTemplate
        let root: SourceNode
        do {
            root = try JSONSourceParser.parse(text)
        } catch {
            file.diagnostics.append(
                Diagnostic(file: path, position: error.position, path: .root, code: .invalidRequestContent, message: "cannot parse JSON: \(error.message)"))
            return file
        }
        let ctx = DecodeContext(sink: DiagnosticSink(file: path), apiVersion: apiVersion)
        options.applyArtifactRules(to: ctx)
        var (template, status) = TemplateDecoder(ctx: ctx).decodeResource(root, path: .root, fallbackName: name)
        file.diagnostics = ctx.sink.items
        template?.name = name
        if let template, !ctx.sink.hasErrors {
            file.templates.append(
                makeLoaded(
                    template, status: status, version: apiVersion, scope: options.scope, path: .root, line: root.position.line, artifactLines: ctx.artifactLines
                ))
        }
        return file
    }
}
