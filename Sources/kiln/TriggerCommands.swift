// kiln template trigger: SourceImage triggers, as AIB has them (one per template).
import ArgumentParser
import Foundation
import KilnCore
import KilnStore
import KilnTemplates

extension Template {
    struct Trigger: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "SourceImage triggers: run a template when its source resolves to a new image.",
            discussion: """
                A trigger watches its template's source (a platform image or a gallery image version at 'latest'): when \
                it resolves to another image than the one last seen (a new catalog version, a new gallery version), the \
                template is run once. `kiln controller` polls every trigger (triggers.pollInterval, default 60s); \
                `kiln template trigger poll` polls once.
                """,
            subcommands: [TriggerCreate.self, TriggerList.self, TriggerShow.self, TriggerDelete.self, TriggerPoll.self])
    }
}

struct TriggerCreate: KilnCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Add a trigger to a template (or from a trigger resource file).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Template name or resource id (or give --file).") var template: String?
    @Option(help: "The trigger's name.") var name = "source"
    @Option(help: "The trigger kind (AIB has SourceImage).") var kind = "SourceImage"
    @Option(help: ArgumentHelp("A trigger resource (JSON or YAML), as for az resource create.", valueName: "FILE")) var file: String?

    func run(_ env: KilnEnvironment) async throws {
        let core = try await Template.core(env)
        var (templateName, triggerName, triggerKind) = (template, name, TriggerKind.matching(kind))
        if let file {
            let loaded = TemplateLoader.loadFile(file)
            if !loaded.isValid { throw CLIError.lines(loaded.errors.map(\.description)) }
            guard let t = loaded.triggers.first else { throw CLIError.message("\(file) holds no trigger resource (type \(TriggerResource.resourceType))") }
            (templateName, triggerName, triggerKind) = (t.templateName, t.name, t.kind)
        }
        guard let templateName else { throw ValidationError("name a template, or give --file") }
        guard let triggerKind else { throw ValidationError("--kind \(kind): not a trigger kind; AIB has \(TriggerKind.spellings)") }
        let made: TriggerRecord
        do { made = try await core.createTrigger(template: templateName, name: triggerName, kind: triggerKind) } catch { throw CLIError.core(error) }
        switch env.output {
        case .json: try printJSON(TriggerResourceDocument(made))
        case .text: print("created trigger \(made.name) of \(templateName): \(made.statusCode) (\(made.statusMessage))")
        }
    }
}

struct TriggerList: KilnCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List triggers (of one template, or all).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Template name or resource id.") var template: String?

    func run(_ env: KilnEnvironment) async throws {
        let core = try await Template.core(env)
        let all: [TriggerRecord]
        do { all = try await core.triggers(template: template) } catch { throw CLIError.core(error) }
        switch env.output {
        case .json: try printJSON(ListDocument(value: all.map(TriggerResourceDocument.init)))
        case .text:
            if all.isEmpty { printError("no triggers"); return }
            printTable(
                ["TEMPLATE", "NAME", "KIND", "STATUS", "LAST RUN", "MESSAGE"],
                all.map { t in
                    [
                        ResourceID.parse(String(t.id.dropLast("/triggers/\(t.name)".count)))?.name ?? t.templateKey, t.name, t.kind.rawValue,
                        t.statusCode.rawValue, t.lastRunId ?? "-", t.statusMessage
                    ]
                })
        }
    }
}

struct TriggerShow: KilnCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a template's trigger.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Template name or resource id.") var template: String
    @Argument(help: "The trigger's name (default: the template's only trigger).") var name: String?

    func run(_ env: KilnEnvironment) async throws {
        let core = try await Template.core(env)
        let t: TriggerRecord
        do { t = try await core.trigger(template: template, name: name) } catch { throw CLIError.core(error) }
        switch env.output {
        case .json: try printJSON(TriggerResourceDocument(t))
        case .text:
            print("\(t.name)  \(t.id)")
            print("  kind      \(t.kind)")
            print("  status    \(t.statusCode): \(t.statusMessage) (\(shortDate(t.statusTime)))")
            print("  watching  \(t.baseline.map { "\($0.shown) (the image it last saw)" } ?? "nothing yet")")
            if let r = t.lastRunId { print("  last run  \(r)") }
        }
    }
}

struct TriggerDelete: KilnCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a template's trigger.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Template name or resource id.") var template: String
    @Argument(help: "The trigger's name (default: the template's only trigger).") var name: String?

    func run(_ env: KilnEnvironment) async throws {
        let core = try await Template.core(env)
        do { try await core.deleteTrigger(template: template, name: name) } catch { throw CLIError.core(error) }
        if env.output == .text { print("deleted the trigger of \(template)") } else { try printJSON(DeletedDocument(template)) }
    }
}

struct TriggerPoll: KilnCommand {
    static let configuration = CommandConfiguration(
        commandName: "poll", abstract: "Poll every trigger once and queue the runs they start (for cron; the controller polls by itself).")
    @OptionGroup var global: GlobalOptions

    func run(_ env: KilnEnvironment) async throws {
        let core = try await Template.core(env)
        let runs = await core.pollTriggers()
        switch env.output {
        case .json: try printJSON(ListDocument(value: runs.map(RunDocument.init)))
        case .text:
            if runs.isEmpty { print("no trigger fired") }
            for r in runs { print("run \(r.id) of \(ResourceID.parse(r.templateId)?.name ?? r.templateId) queued") }
        }
    }
}
