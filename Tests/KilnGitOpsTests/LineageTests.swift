import Foundation
import KilnGit
@testable import KilnGitOps
import KilnStore
import KilnTemplates
import Testing

/// Templates built on images other templates of the repository publish: the plan lists producers first, a
/// consumer's run waits for its producers, an unchanged consumer is rebuilt when its source moved, and a
/// cycle is an error at each member's source.
@Suite struct LineageTests {
    static let gallery = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images"
    static let managed = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images"

    enum From { case platform, latest(String), pinned(String, String), managedImage(String) }

    static func desired(_ name: String, publishes: String? = nil, managedImage: String? = nil, from: From = .platform, tags: String = "")
        -> DesiredTemplate
    {
        let src: String
        switch from {
        case .platform: src = #"{"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}"#
        case .latest(let d): src = #"{"type": "SharedImageVersion", "imageVersionId": "\#(gallery)/\#(d)/versions/latest"}"#
        case .pinned(let d, let v): src = #"{"type": "SharedImageVersion", "imageVersionId": "\#(gallery)/\#(d)/versions/\#(v)"}"#
        case .managedImage(let m): src = #"{"type": "ManagedImage", "imageId": "\#(managed)/\#(m)"}"#
        }
        var dist = [#"{"type": "VHD", "runOutputName": "\#(name)-vhd"}"#]
        if let publishes {
            dist.append(
                #"{"type": "SharedImage", "runOutputName": "\#(name)-sig", "galleryImageId": "\#(gallery)/\#(publishes)", "targetRegions": [{"name": "westeurope"}]}"#
            )
        }
        if let managedImage {
            dist.append(#"{"type": "ManagedImage", "runOutputName": "\#(name)-mi", "imageId": "\#(managed)/\#(managedImage)", "location": "westeurope"}"#)
        }
        let json = """
            {"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "\(name)", "location": "westeurope",
             "tags": {\(tags)}, "identity": {"type": "None"},
             "properties": {
               "source": \(src),
               "distribute": [\(dist.joined(separator: ", "))]}}
            """
        let options = LoadOptions(scope: DeploymentScope(subscriptionId: "s", resourceGroup: "rg", location: "westeurope"))
        let file = TemplateLoader.load(text: json, path: "templates/\(name).json", format: .json, options: options)
        let t = file.templates[0]
        return DesiredTemplate(loaded: t, file: "templates/\(name).json", referencedFiles: [:], contentHash: ContentHash.of(t.template, referencedFiles: [:]))
    }

    static let templates: [String: DesiredTemplate] = [
        "base": desired("base", publishes: "base"),
        "app": desired("app", publishes: "app", from: .latest("base")),
        "web": desired("web", from: .latest("app")),
        "tools": desired("tools"),
        "other": desired("other", from: .latest("elsewhere")),
        "pinned": desired("pinned", from: .pinned("base", "1.0.0")),
        "golden": desired("golden", managedImage: "golden"),
        "onGolden": desired("onGolden", from: .managedImage("golden")),
        "self": desired("self", publishes: "self", from: .latest("self"))
    ]

    static func state(_ names: [String], config: RepositoryConfig = RepositoryConfig()) -> DesiredState {
        DesiredState(
            commit: ObjectID(hex: String(repeating: "a", count: 40))!, config: config, templates: names.map { templates[$0]! }, invalid: [], galleries: [])
    }

    static func recorded(_ name: String, run: RunState? = .succeeded, builtFrom: BuiltSource? = nil) -> ManagedTemplateSummary {
        let d = templates[name]!
        return ManagedTemplateSummary(
            id: d.id, name: name, resourceGroup: "rg", sourceFile: d.file, sourceCommit: "c0", contentHash: d.contentHash, provisioningState: .succeeded,
            lastRunState: run, lastRunSubState: nil, lastRunId: run == nil ? nil : "run-\(name)", lastAttemptSource: builtFrom)
    }

    static func version(_ d: String, _ v: String, sha: String = "sha-\(UUID())") -> BuiltSource {
        BuiltSource(reference: "\(gallery)/\(d)/versions/\(v)", sha256: sha)
    }

    @Test(arguments: [
        (["web", "app", "base"], ["base", "app", "web"]),
        (["app", "tools", "base"], ["base", "app", "tools"]),
        (["tools", "other"], ["tools", "other"]),
        (["web", "tools"], ["web", "tools"]),
        (["base", "app", "web"], ["base", "app", "web"]),
        (["onGolden", "pinned", "golden", "base"], ["golden", "onGolden", "base", "pinned"]),
        (["self", "tools"], ["self", "tools"])
    ])
    func thePlanListsProducersFirst(_ given: [String], _ expected: [String]) {
        let plan = Planner.plan(desired: Self.state(given), recorded: [])
        #expect(plan.items.map(\.name) == expected)
    }

    /// Created together: everything is created, but a consumer's first run is left until its producers built.
    @Test func aNewConsumerIsCreatedButRunsAfterItsProducer() {
        let plan = Planner.plan(desired: Self.state(["base", "app", "web", "pinned", "tools"]), recorded: [])
        let byName = Dictionary(uniqueKeysWithValues: plan.items.map { ($0.name, $0) })
        #expect(plan.items.allSatisfy { $0.action == .create })
        #expect(byName["base"]!.waitsFor.isEmpty && byName["tools"]!.waitsFor.isEmpty)
        #expect(byName["app"]!.waitsFor == ["base"])
        #expect(byName["web"]!.waitsFor == ["app"])
        // A pinned source still orders the first build.
        #expect(byName["pinned"]!.waitsFor == ["base"])
    }

    /// The loop the issue describes: base's script changed, app and web are unchanged.
    @Test func aRebuiltProducerRebuildsWhatFollowsItTransitively() {
        var changedBase = Self.recorded("base")
        changedBase.contentHash = "sha256:old"
        let plan = Planner.plan(
            desired: Self.state(["base", "app", "web", "pinned", "tools"]),
            recorded: [changedBase, Self.recorded("app"), Self.recorded("web"), Self.recorded("pinned"), Self.recorded("tools")])
        let actions = Dictionary(uniqueKeysWithValues: plan.items.map { ($0.name, $0.action) })
        #expect(actions == ["base": .recreate, "app": .rebuild, "web": .rebuild, "pinned": .unchanged, "tools": .unchanged])
        #expect(plan.items.first { $0.name == "web" }?.waitsFor == ["app"])
        #expect(plan.items.first { $0.name == "app" }?.reason == "its source is rebuilt first: base")
        // A rebuild applies nothing now: it is run by the plan after the producer's run.
        #expect(plan.changes.map(\.name) == ["base"])
    }

    struct Outdated: Sendable, CustomTestStringConvertible {
        var lastRun: RunState? = .succeeded
        var builtFrom: BuiltSource?
        var now: BuiltSource?
        var config = RepositoryConfig()
        var consumer = "app"
        var expected: PlanItem.Action
        var testDescription: String {
            "\(consumer) last \(lastRun.map { "\($0)" } ?? "never run") from \(builtFrom?.shown ?? "-"), now \(now?.shown ?? "-") → \(expected)"
        }
    }

    static let v100 = version("base", "1.0.0", sha: "s100")
    static let v101 = version("base", "1.0.1", sha: "s101")
    static let outdatedCases: [Outdated] = [
        Outdated(builtFrom: v100, now: v101, expected: .run),
        Outdated(builtFrom: v101, now: v101, expected: .unchanged),
        // The same version id with another digest (deleted and published again) is another image.
        Outdated(builtFrom: v100, now: version("base", "1.0.0", sha: "other"), expected: .run),
        Outdated(builtFrom: BuiltSource(reference: v100.reference.uppercased(), sha256: nil), now: v100, expected: .unchanged),
        // A failed build from the new source is not retried for it at every plan.
        Outdated(lastRun: .failed, builtFrom: v101, now: v101, expected: .unchanged),
        Outdated(lastRun: .failed, builtFrom: nil, now: v101, expected: .run),
        Outdated(lastRun: .canceled, builtFrom: nil, now: v101, expected: .unchanged),
        Outdated(lastRun: .running, builtFrom: v100, now: v101, expected: .unchanged),
        Outdated(builtFrom: v100, now: nil, expected: .unchanged),
        Outdated(builtFrom: v100, now: v101, config: RepositoryConfig(rebuildOnSourceChange: false), expected: .unchanged),
        Outdated(builtFrom: v100, now: v101, consumer: "pinned", expected: .unchanged)
    ]

    @Test(arguments: outdatedCases)
    func anUnchangedConsumerIsRunWhenItsSourceMoved(_ c: Outdated) {
        let sources = c.now.map { [Self.templates[c.consumer]!.key: $0] } ?? [:]
        let plan = Planner.plan(
            desired: Self.state(["base", c.consumer], config: c.config),
            recorded: [Self.recorded("base"), Self.recorded(c.consumer, run: c.lastRun, builtFrom: c.builtFrom)], sources: sources)
        let item = plan.items.first { $0.name == c.consumer }!
        #expect(item.action == c.expected, "\(item.summary)")
        if c.expected == .run { #expect(item.reason?.contains("1.0.1") == true || item.reason?.contains("1.0.0") == true, "\(item.summary)") }
    }

    @Test func theTagOptsATemplateOut() {
        let opted = Self.desired("app", publishes: "app", from: .latest("base"), tags: #""kiln.rebuildOnSourceChange": "false""#)
        var state = Self.state(["base"])
        state.templates.append(opted)
        var changedBase = Self.recorded("base")
        changedBase.contentHash = "sha256:old"
        var app = Self.recorded("app", builtFrom: Self.v100)
        app.contentHash = opted.contentHash
        let plan = Planner.plan(desired: state, recorded: [changedBase, app], sources: [opted.key: Self.v101])
        #expect(plan.items.map(\.action) == [.recreate, .unchanged])
    }

    @Test func aBuildOrderCycleIsAnErrorAtEachSource() {
        let a = Self.desired("a", publishes: "a", from: .latest("c"))
        let b = Self.desired("b", publishes: "b", from: .latest("a"))
        let c = Self.desired("c", publishes: "c", from: .latest("b"))
        var state = Self.state(["tools", "app"])
        state.templates += [a, b, c]
        let plan = Planner.plan(desired: state, recorded: [])
        #expect(plan.items.filter { $0.action == .create }.map(\.name) == ["tools", "app"])
        let invalid = plan.invalid
        #expect(invalid.map(\.file) == ["templates/a.json", "templates/b.json", "templates/c.json"])
        for item in invalid {
            let d = item.diagnostics[0]
            #expect(d.path.description == "$.properties.source")
            #expect(d.line == 4, "\(d)")  // the line of "source"
            #expect(d.message.hasPrefix("build order cycle: a (templates/a.json) → c (templates/c.json) → b (templates/b.json) → a"), "\(d.message)")
        }
    }

    @Test(arguments: [
        ("base 1.0.1", version("base", "1.0.1")),
        ("Debian:debian-12:12-gen2:2026.1128.0", BuiltSource(reference: "Debian:debian-12:12-gen2:2026.1128.0", sha256: nil))
    ])
    func aSourceIsShownByImageAndVersion(_ expected: String, _ source: BuiltSource) {
        #expect(source.shown == expected)
    }
}
