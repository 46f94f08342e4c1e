import Foundation
import Testing
@testable import KilnTemplates

/// Templates shaped like those people publish for AIB: documentation placeholders, ARM deployment
/// wrappers with parameters, old api-versions, Windows customizer chains, VNet and staging-group
/// settings, templates exported from Azure. They fail with the placeholder message while placeholders
/// are left, and validate once they are filled in (as users do with sed).
@Suite struct RealWorldTemplateTests {
    static let files: [String] = Fixtures.files(in: "realworld", extensions: ["json", "yaml"]).filter { !$0.hasSuffix("fill.json") }

    static let fill: [String: String] = {
        let data = FileManager.default.contents(atPath: Fixtures.path("realworld/fill.json"))!
        return try! JSONSerialization.jsonObject(with: data) as! [String: String]
    }()

    static func filled(_ text: String) -> String {
        var t = text
        for (k, v) in fill { t = t.replacingOccurrences(of: k, with: v) }
        return t
    }

    static func loadFile(_ path: String, filled doFill: Bool) throws -> LoadedFile {
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let paramsPath = TemplateLoader.siblingParametersPath(for: path)
        var params = (try? String(contentsOfFile: paramsPath, encoding: .utf8)).map { (paramsPath, $0) }
        if doFill {
            text = filled(text)
            params = params.map { ($0.0, filled($0.1)) }
        }
        return load(text, path: path, parameters: params)
    }

    @Test func thereAreEnoughShapes() { #expect(Self.files.count >= 9) }

    @Test(arguments: files)
    func failsWithThePlaceholderMessageBeforeFilling(_ path: String) throws {
        let f = try Self.loadFile(path, filled: false)
        #expect(!f.isValid)
        #expect(f.templates.isEmpty)
        #expect(f.errors.map(\.code) == [.unfilledPlaceholder], "\(path): \(f.errors.map(\.description))")
        // Every placeholder in the template text is named in the message.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let message = f.errors.map(\.message).joined()
        for ph in Self.fill.keys where text.contains(ph) {
            #expect(message.contains(ph), "\(ph) not listed: \(message)")
        }
    }

    @Test(arguments: files)
    func validatesOnceFilled(_ path: String) throws {
        let f = try Self.loadFile(path, filled: true)
        #expect(f.errors.isEmpty, "\(path): \(f.errors.map(\.description))")
        #expect(f.templates.count == 1)
    }

    /// AIB's quickstarts write `"type": "Microsoft.VirtualMachineImages"` (for `az resource create --is-full-object
    /// --resource-type …/imageTemplates`): read as an image template, with a warning that names the form.
    @Test func theQuickstartShortTypeLoadsWithAWarning() throws {
        let f = try Self.loadFile(Fixtures.path("realworld/10-quickstart-short-type-sig.json"), filled: true)
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        let t = try #require(f.templates.first)
        #expect(t.template.name == "10-quickstart-short-type-sig" && t.apiVersion == APIVersion("2022-02-14"))
        let warning = try #require(f.diagnostics.first { $0.severity == .warning && $0.path == JSONPath.root / "type" })
        #expect(warning.message.contains("short form of AIB's quickstarts") && warning.line == 2, "\(warning)")
    }

    @Test func oldApiVersionIsCaseInsensitiveAndToleratesUnknownProperties() throws {
        let f = try Self.loadFile(Fixtures.path("realworld/02-sig-replication-2020-02-14.json"), filled: true)
        let t = try #require(f.templates.first)
        #expect(t.apiVersion == APIVersion("2020-02-14"))
        guard case .platformImage(let src) = t.template.properties.source else { Issue.record("source"); return }
        #expect(src.publisher == "Canonical")
        #expect(t.template.properties.buildTimeoutInMinutes == 100)
        // The unknown property is a warning that names it, not an error.
        #expect(f.diagnostics.contains { $0.severity == .warning && $0.path.description == "$.Properties.comment" })
    }

    @Test func exportedTemplateKeepsReadOnlyStateApart() throws {
        let f = try Self.loadFile(Fixtures.path("realworld/06-exported-2024-02-01.json"), filled: true)
        let t = try #require(f.templates.first)
        #expect(t.status.provisioningState == .succeeded)
        #expect(t.status.lastRunStatus?.runState == .succeeded)
        #expect(t.status.sourceExactVersion == "22.04.202402140")
        #expect(t.status.exactStagingResourceGroup?.contains("IT_aibImageRG") == true)
        // Defaults applied as AIB applies them.
        #expect(t.template.properties.buildTimeoutInMinutes == 240)
        #expect(t.template.properties.vmProfile.vmSize == "")
        // Read-only values do not reach the content hash.
        let json = String(decoding: ContentHash.canonicalJSON(t.template), as: UTF8.self)
        #expect(!json.contains("exactVersion") && !json.contains("provisioningState") && !json.contains("principalId"))
    }

    @Test func armDeploymentEvaluatesParametersFromTheFile() throws {
        let f = try Self.loadFile(Fixtures.path("realworld/05-arm-deployment-sig.json"), filled: true)
        let t = try #require(f.templates.first)
        #expect(t.template.name == "helloImageTemplateLinux01")
        #expect(t.apiVersion == APIVersion("2022-02-14"))
        #expect(t.template.location == "westus2")
        guard case .sharedImage(let d) = t.template.properties.distribute.first else { Issue.record("distribute"); return }
        #expect(
            d.galleryImageId
                == "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aibImageRG/providers/Microsoft.Compute/galleries/myIbGallery/images/myIbImageDef"
        )
        #expect(d.targetRegions.map(\.name) == ["westus2", "eastus"])
        #expect(d.usesDeprecatedReplicationRegions)
    }

    @Test func windowsChainDecodesWithDefaults() throws {
        let f = try Self.loadFile(Fixtures.path("realworld/03-windows-customizers-2022-07-01.json"), filled: true)
        let c = try #require(f.templates.first).template.properties.customize
        #expect(c.map(\.kind) == [.powerShell, .windowsRestart, .file, .powerShell, .powerShell, .windowsRestart, .windowsUpdate])
        if case .windowsRestart(let r) = c[1] {
            #expect(r.restartCommand == WindowsRestart.defaultRestartCommand)
            #expect(r.restartTimeout == "5m")
        } else {
            Issue.record("restart")
        }
        if case .powerShell(let p) = c[4] {
            #expect(p.runElevated && p.runAsSystem)
            #expect(p.validExitCodes == [0, 3010])
        } else {
            Issue.record("powershell")
        }
        if case .powerShell(let p) = c[0] { #expect(p.validExitCodes == [0]) }
        if case .windowsUpdate(let u) = c[6] { #expect(u.updateLimit == 20 && u.filters.count == 2) }
        if case .file(let file) = c[2] { #expect(file.destination == "c:\\buildArtifacts\\index.html") }
    }
}
