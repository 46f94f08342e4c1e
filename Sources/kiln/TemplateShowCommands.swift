// kiln template list, show, logs, output, runs and delete: inspect templates and their runs, or remove them.
import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnDistribute
import KilnStore
import KilnSystem
import KilnTemplates

extension Template {
    // MARK: list / show

    struct List: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "List image templates with their state and last run.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("resource-group"), help: "Only this resource group.") var resourceGroup: String?

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let all: [TemplateResource]
            do { all = try await core.templates(resourceGroup: resourceGroup) } catch { throw CLIError.core(error) }
            var rows: [(TemplateResource, RunRecord?)] = []
            for t in all { rows.append((t, try? await core.latestRun(templateId: t.record.id))) }
            switch env.output {
            case .json:
                try printJSON(ListDocument(value: rows.map { ImageTemplateResourceDocument($0.0, lastRun: $0.1) }))
            case .text:
                if rows.isEmpty {
                    printError("no image templates; create one with: kiln template create FILE")
                    return
                }
                var table: [[String]] = []
                for (t, r) in rows {
                    table.append([
                        t.name, t.record.resourceGroup, t.record.provisioningState.rawValue, r?.runState.rawValue ?? "-", r?.runSubState?.rawValue ?? "-",
                        r?.endTime.map(shortDate) ?? "-"
                    ])
                }
                printTable(["NAME", "RESOURCE GROUP", "STATE", "LAST RUN", "SUB-STATE", "ENDED"], table)
            }
        }
    }

    struct Show: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Show a template: its state, last run (phases, message, logs) and outputs.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let t: TemplateResource
            do { t = try await core.template(name) } catch { throw CLIError.core(error) }
            let last = try? await core.latestRun(templateId: t.record.id)
            let status = await core.statusDocument(t.record, lastRun: last)
            let outdated = await core.outdated(t)
            switch env.output {
            case .json:
                try printJSON(ImageTemplateResourceDocument(t, lastRun: last, status: status, outdated: outdated))
            case .text:
                print("\(t.name)  \(t.record.id)")
                print("  provisioningState  \(t.record.provisioningState)")
                if let code = t.record.provisioningErrorCode { print("  provisioningError  \(code): \(t.record.provisioningErrorMessage ?? "")") }
                print("  source             \(describe(t.template.properties.source))")
                if let parent = status.parent {
                    print(
                        "  built on           \(status.source?.image ?? "?") (template \(ResourceID.parse(parent.template)?.name ?? parent.template), run \(parent.runId ?? "?"))"
                    )
                }
                if let outdated { print("  \(outdated)") }
                print(
                    "  customize          \(t.template.properties.customize.count) step\(t.template.properties.customize.count == 1 ? "" : "s"), validate \(t.template.properties.validate.inVMValidations.count), distribute \(t.template.properties.distribute.count)"
                )
                print("  contentHash        \(t.record.contentHash)")
                if let f = t.record.sourceFile { print("  sourceFile         \(f)\(t.record.sourceCommit.map { " @ \($0)" } ?? "")") }
                print("  staging            \(t.record.stagingDirectory)")
                if let r = last { printRun(r) } else { print("  no runs yet: kiln template run \(t.name)") }
            }
        }
    }

    // MARK: logs / output / runs

    struct Logs: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Print a run's customization and validation logs.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Option(help: "A run id (default: the latest run).") var run: String?
        @Flag(help: "Keep printing until the run ends.") var follow = false

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let target: RunRecord
            do {
                if let run {
                    target = try await core.run(id: run)
                } else {
                    guard let r = try await core.runs(name).first else { throw CoreError.notFound("\(name) has no runs yet") }
                    target = r
                }
            } catch let e as CoreError {
                throw CLIError.core(e)
            }
            var follower = RunFollower(core: core, runId: target.id)
            if !follow { follower.pollInterval = .zero }
            let final: RunRecord
            do {
                if follow {
                    final = try await follower.follow { event in
                        if case .log(let l) = event { print(l); fflush(nil) }
                    }
                } else {
                    for name in ["customization.log", "validation.log"] {
                        let path = (target.logDirectory as NSString).appendingPathComponent(name)
                        if let d = FileManager.default.contents(atPath: path) { FileHandle.standardOutput.write(d) }
                    }
                    final = target
                }
            } catch { throw CLIError.core(error) }
            if follow { printError("run \(final.id): \(final.runState)") }
        }
    }

    struct Output: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Show the run outputs of a template's last run.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Argument(help: "One run output by name.") var runOutput: String?

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let runs: [RunRecord]
            do { runs = try await core.runs(name) } catch { throw CLIError.core(error) }
            guard let last = runs.first(where: { !$0.outputs.isEmpty }) else {
                throw CLIError.message("\(name) has no run outputs yet (outputs come from a run that reached Distributing)")
            }
            var outputs = last.outputs
            if let runOutput {
                outputs = outputs.filter { $0.name.caseInsensitiveCompare(runOutput) == .orderedSame }
                guard !outputs.isEmpty else {
                    throw CLIError.message("ResourceNotFound: no run output \(runOutput); there are: \(last.outputs.map(\.name).joined(separator: ", "))")
                }
            }
            switch env.output {
            case .json:
                if runOutput != nil {
                    try printJSON(RunOutputDocument(outputs[0]))
                } else {
                    try printJSON(ListDocument(value: outputs.map { RunOutputDocument($0) }))
                }
            case .text:
                for o in outputs {
                    print("\(o.name): \(o.provisioningState)")
                    if let id = o.artifactId { print("  artifactId   \(id)") }
                    if let uri = o.artifactUri { print("  artifactUri  \(uri)") }
                    if let m = o.message { print("  note         \(m)") }
                }
            }
        }
    }

    struct Runs: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "List every run of a template, newest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let runs: [RunRecord]
            do { runs = try await core.runs(name) } catch { throw CLIError.core(error) }
            switch env.output {
            case .json: try printJSON(ListDocument(value: runs.map(RunDocument.init)))
            case .text:
                var table: [[String]] = []
                for r in runs {
                    let d = r.endTime.map { formatDuration(.seconds($0.timeIntervalSince(r.startTime ?? r.queuedAt))) } ?? "-"
                    table.append([r.id, r.runState.rawValue, r.runSubState?.rawValue ?? "-", shortDate(r.queuedAt), d])
                }
                printTable(["RUN", "STATE", "SUB-STATE", "QUEUED", "DURATION"], table)
            }
        }
    }

    // MARK: delete

    struct Delete: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a template, its runs and its staging area.",
            discussion: "Refused (OperationNotAllowed) while a run is Running or Canceling. A build VM kept by errorHandling abort is stopped."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            do { try await core.delete(name) } catch { throw CLIError.core(error) }
            if env.output == .text { print("deleted \(name)") } else { try printJSON(DeletedDocument(name)) }
        }
    }
}

func describe(_ s: ImageSource) -> String {
    switch s {
    case .platformImage(let p): return "PlatformImage \(p.publisher):\(p.offer):\(p.sku):\(p.version)"
    case .managedImage(let m): return "ManagedImage \(m.imageId)"
    case .sharedImageVersion(let v): return "SharedImageVersion \(v.imageVersionId)"
    }
}
