// kiln template create: create image templates from a file.
import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnDistribute
import KilnStore
import KilnSystem
import KilnTemplates

extension Template {
    // MARK: create

    struct Create: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create image templates from a file (a bare resource, an ARM deployment template or YAML).",
            discussion: """
                Customization artifacts (scriptUri, sourceUri) are copied into the template's staging area now and \
                their sha256Checksum verified: a mismatch fails the create (provisioningState Failed), never a build. \
                Relative paths resolve against the template's directory, then the directory of the nearest kiln.yaml \
                (the repository), and must stay inside it. file:// references may name only files under the \
                configuration's artifacts.allowedFileRoots, and URLs may not reach internal addresses unless \
                artifacts.allowedHosts lists them, as for templates from git; --trust-local-files lets a template you \
                wrote yourself read any file you can read. \
                Credentials for https:// artifacts come from the identity named by the template, configured in \
                <data-dir>/identities.yaml. Exit status 1 when a template fails to provision.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The template file.") var file: String
        @Option(name: [.customShort("p"), .customLong("parameter")], help: ArgumentHelp("A deployment parameter NAME=VALUE.", valueName: "NAME=VALUE"))
        var parameters: [String] = []
        @Option(help: "Subscription id (default: kiln.yaml, else all zeros).") var subscription: String?
        @Option(name: .customLong("resource-group"), help: "Resource group (default: kiln.yaml, else 'kiln').") var resourceGroup: String?
        @Option(help: "Location for resourceGroup().location (default: kiln.yaml, else 'local').") var location: String?
        @Flag(help: "Queue a run right after a successful create.") var run = false
        @Flag(
            name: .customLong("trust-local-files"),
            help:
                "Let file:// references and local VHD targets name any path the user running kiln can use (default: only under artifacts.allowedFileRoots and distribution.allowedVhdRoots)."
        )
        var trustLocalFiles = false

        func run(_ env: KilnEnvironment) async throws {
            var options = LoadOptions()
            for p in parameters {
                let parts = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--parameter '\(p)' must be NAME=VALUE") }
                options.parameters[String(parts[0])] = String(parts[1])
            }
            if let s = subscription { options.scope.subscriptionId = s }
            if let g = resourceGroup { options.scope.resourceGroup = g }
            if let l = location { options.scope.location = l }
            let absolute = URL(fileURLWithPath: file).standardizedFileURL.path
            let dir = (absolute as NSString).deletingLastPathComponent
            let repository = repositoryRoot(from: dir)
            let policy = env.configuration?.artifactPolicy ?? .untrusted
            options.artifactPolicy = trustLocalFiles ? policy.trustingLocalFiles : policy
            options.repositoryPath = repository.map { String(absolute.dropFirst($0.count + 1)) } ?? (absolute as NSString).lastPathComponent
            let scanner = TemplateScanner(options: options, explicitScope: subscription != nil || resourceGroup != nil || location != nil)
            guard FileManager.default.fileExists(atPath: file) else {
                throw CLIError.message("\(file): no such file")
            }
            let loaded: LoadedFile
            do {
                guard
                    let f = try scanner.scan([file]).first(where: {
                        $0.path == file || $0.path.hasSuffix(file) || $0.kind == .imageTemplate || $0.kind == .deploymentTemplate
                    })
                else {
                    throw CLIError.message("\(file) holds no image template")
                }
                loaded = f
            } catch let e as TemplateScanner.ScanError {
                throw CLIError.message("\(e)")
            }
            for d in loaded.diagnostics { printError(d.description) }
            guard loaded.isValid else { throw ExitCode(1) }
            guard !loaded.templates.isEmpty else {
                throw CLIError.message("\(file) holds no image template (it is \(loaded.kind?.rawValue ?? "not a template"))")
            }
            let core = try await Template.core(env)
            let origin = TemplateOrigin(
                file: absolute, relativeArtifacts: DirectoryArtifactSource(templateFile: absolute, repositoryRoot: repository),
                trustsLocalFiles: trustLocalFiles, actor: ResourceActor(ProcessInfo.processInfo.userName, kind: .user))
            // Image definitions the deployment declares beside its templates are Kiln's own, as `kiln gallery create` makes them.
            for d in loaded.galleryDefinitions {
                do {
                    let (_, change) = try await core.ensureGalleryDefinition(d)
                    if env.output == .text, change != .unchanged { printError("gallery image definition \(d.gallery)/\(d.name): \(change.rawValue)") }
                } catch {
                    throw CLIError.core(error)
                }
            }
            var failed = false
            var created: [ImageTemplateResourceDocument] = []
            for t in loaded.templates {
                do {
                    let r = try await core.create(t, origin: origin)
                    var lastRun = try? await core.latestRun(templateId: r.record.id)
                    if run, r.provisioningState == .succeeded, lastRun == nil {
                        lastRun = try await core.queueRun(r)
                        try spawnWorker(env, paths: core.paths)
                    }
                    created.append(ImageTemplateResourceDocument(r, lastRun: lastRun))
                    if r.provisioningState == .succeeded {
                        if env.output == .text {
                            print(
                                "created \(r.name) (\(r.record.id)): Succeeded, \(r.record.artifacts.count) artifact\(r.record.artifacts.count == 1 ? "" : "s") staged"
                            )
                            if let lastRun { print("queued run \(lastRun.id); follow it with: kiln template logs \(r.name) --follow") }
                        }
                    } else {
                        failed = true
                        if env.output == .text {
                            print("created \(r.name) (\(r.record.id)): Failed")
                            print("  \(r.record.provisioningErrorCode ?? "Other"): \(r.record.provisioningErrorMessage ?? "")")
                            print("  the template stays, Failed, until deleted: kiln template delete \(r.name)")
                        }
                    }
                } catch let error as CoreError {
                    printError("kiln: \(t.template.name): \(render(error))")
                    failed = true
                }
            }
            if env.output == .json { if created.count == 1 { try printJSON(created[0]) } else { try printJSON(ListDocument(value: created)) } }
            if failed { throw ExitCode(1) }
        }

        /// The directory of the nearest kiln.yaml above `dir`, the root of a GitOps repository checkout.
        func repositoryRoot(from dir: String) -> String? {
            var d = dir
            while true {
                for n in ["kiln.yaml", "kiln.yml"] where FileManager.default.fileExists(atPath: (d as NSString).appendingPathComponent(n)) { return d }
                let parent = (d as NSString).deletingLastPathComponent
                if parent == d || parent.isEmpty { return nil }
                d = parent
            }
        }
    }
}
