import ArgumentParser
import Foundation
import KilnTemplates

struct Validate: KilnCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate image templates.",
        discussion: """
            Checks bare imageTemplates resources (JSON or YAML), ARM deployment templates (with \
            NAME.parameters.json beside them) and kiln.yaml/gallery files, reporting every problem as
            FILE:LINE: $.json.path: CODE: message
            Exit status: 0 when everything is valid, 1 when anything is invalid, 2 on usage errors.
            """
    )

    @OptionGroup var global: GlobalOptions

    /// A configuration file that does not check is no reason not to validate templates.
    static var checksConfiguration: Bool { false }

    @Argument(help: ArgumentHelp("Files or directories (searched recursively).", valueName: "PATH"))
    var paths: [String]

    @Option(
        name: [.customShort("p"), .customLong("parameter")],
        help: ArgumentHelp("A deployment template parameter, NAME=VALUE (JSON for non-string types). Repeatable.", valueName: "NAME=VALUE"))
    var parameters: [String] = []

    @Option(help: "Subscription id for resource ids and subscription() (default: kiln.yaml, else all zeros).")
    var subscription: String?

    @Option(name: .customLong("resource-group"), help: "Resource group for templates and resourceGroup() (default: kiln.yaml, else 'kiln').")
    var resourceGroup: String?

    @Option(help: "Location returned by resourceGroup().location (default: kiln.yaml, else 'local').")
    var location: String?

    @Flag(name: .long, help: "Hide warnings.")
    var quiet = false

    func validate() throws {
        for p in parameters where !p.contains("=") || p.hasPrefix("=") {
            throw ValidationError("--parameter '\(p)' must be NAME=VALUE")
        }
    }

    struct Report: Encodable {
        struct Template: Encodable {
            var name: String
            var id: String
            var apiVersion: String
            var contentHash: String
            var line: Int
            var path: String
        }
        struct File: Encodable {
            var path: String
            var kind: String?
            var valid: Bool
            var parametersFile: String?
            var templates: [Template]
            var skipped: [SkippedResource]
            var diagnostics: [Diagnostic]
        }
        var valid: Bool
        var files: [File]
        var errors: Int
        var warnings: Int
    }

    func run(_ env: KilnEnvironment) throws {
        var options = LoadOptions()
        for p in parameters {
            let parts = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            options.parameters[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        if let s = subscription { options.scope.subscriptionId = s }
        if let g = resourceGroup { options.scope.resourceGroup = g }
        if let l = location { options.scope.location = l }
        let scanner = TemplateScanner(options: options, explicitScope: subscription != nil || resourceGroup != nil || location != nil)
        let files: [LoadedFile]
        do {
            files = try scanner.scan(paths)
        } catch {
            throw CLIError.line("kiln validate: error: \(error)", status: 2)
        }
        if files.isEmpty {
            throw CLIError.line("kiln validate: error: no .json, .yaml or .yml files under \(paths.joined(separator: " "))", status: 2)
        }
        let allDiagnostics = files.flatMap(\.diagnostics)
        let errors = allDiagnostics.filter { $0.severity == .error }.count
        let warnings = allDiagnostics.count - errors
        let valid = errors == 0

        switch env.output {
        case .json:
            let report = Report(
                valid: valid,
                files: files.map { f in
                    Report.File(
                        path: f.path, kind: f.kind?.rawValue, valid: f.isValid, parametersFile: f.parametersFile,
                        templates: f.templates.map {
                            Report.Template(
                                name: $0.template.name, id: $0.resourceId.description, apiVersion: $0.apiVersion.description,
                                contentHash: $0.contentHash, line: $0.line, path: $0.resourcePath.description)
                        },
                        skipped: f.skipped, diagnostics: quiet ? f.errors : f.diagnostics)
                }, errors: errors, warnings: warnings)
            try printJSON(report)
        case .text:
            for f in files {
                let ordered = f.diagnostics.enumerated().sorted { a, b in
                    (a.element.file, a.element.line, a.offset) < (b.element.file, b.element.line, b.offset)
                }.map(\.element)
                for d in ordered where !(quiet && d.severity == .warning) { print(d.description) }
                guard env.verbose, f.isValid else { continue }
                for t in f.templates {
                    print("\(f.path):\(t.line): \(t.resourcePath): ok: \(t.template.name) \(t.contentHash) (api-version \(t.apiVersion))")
                }
                for s in f.skipped {
                    print("\(f.path):\(s.line): \(s.path): skipped: \(s.type)\(s.name.map { " '\($0)'" } ?? ""): \(s.reason)")
                }
                for g in f.galleryDefinitions {
                    print("\(f.path):1: $: ok: gallery image definition \(g.id) (\(g.osType.rawValue), \(g.hyperVGeneration.rawValue))")
                }
                if let c = f.repositoryConfig {
                    print(
                        "\(f.path):1: $: ok: repository defaults subscription=\(c.subscription ?? "-") resourceGroup=\(c.resourceGroup ?? "-") location=\(c.location ?? "-")"
                    )
                }
            }
            let templates = files.reduce(0) { $0 + $1.templates.count }
            let invalidFiles = files.filter { !$0.isValid }.count
            printError(
                "\(files.count) file\(files.count == 1 ? "" : "s"), \(templates) valid template\(templates == 1 ? "" : "s"); "
                    + (valid ? "all valid" : "\(invalidFiles) invalid file\(invalidFiles == 1 ? "" : "s")")
                    + " (\(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s"))")
        }
        if !valid { throw ExitCode(1) }
    }
}
