import Foundation
import KilnCore
import KilnGit
@testable import KilnGitOps
import KilnTemplates
import KilnTestSupport
import Testing

/// A pushed template may reach only files of its own repository: `..` between sibling folders works, a path
/// or a symbolic link out of the repository and a host file are invalid at plan time, with their JSON path
/// and line, and nothing of the host is staged.
@Suite struct RepositoryTrustTests {
    @Test func pushedTemplatesStayInsideTheRepository() async throws {
        let f = try GitOpsFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("kiln.yaml", GitOpsFixture.kilnYAML)
        try f.write("scripts/web.sh", "#!/bin/sh\necho web\n")
        try f.write("lib/common.sh", "#!/bin/sh\necho common\n")
        try FileManager.default.createSymbolicLink(atPath: f.work + "/scripts/common.sh", withDestinationPath: "../lib/common.sh")
        try FileManager.default.createSymbolicLink(atPath: f.work + "/scripts/evil.sh", withDestinationPath: "/etc/shadow")
        try f.write("templates/web.json", TemplateText.oneStep("web", #"{"type": "Shell", "name": "s", "scriptUri": "../scripts/web.sh"}"#))
        try f.write("templates/common.json", TemplateText.oneStep("common", #"{"type": "Shell", "name": "s", "scriptUri": "../scripts/common.sh"}"#))
        try f.write("templates/link.json", TemplateText.oneStep("link", #"{"type": "Shell", "name": "s", "scriptUri": "../scripts/evil.sh"}"#))
        try f.write("templates/climb.json", TemplateText.oneStep("climb", #"{"type": "Shell", "name": "s", "scriptUri": "../../etc/passwd"}"#))
        try f.write(
            "templates/shadow.json",
            TemplateText.oneStep("shadow", #"{"type": "File", "name": "f", "sourceUri": "file:///etc/shadow", "destination": "/tmp/s"}"#))
        try f.write(
            "templates/metadata.json",
            TemplateText.oneStep("metadata", #"{"type": "Shell", "name": "s", "scriptUri": "https://169.254.169.254/latest/user-data"}"#))
        let commit = try f.push("templates with good and bad references")

        let ctl = try f.controller()
        try await ctl.mirror.refresh()
        let plan = try await ctl.reconciler.plan(at: try #require(ObjectID(hex: commit)))
        var invalid: [String: Diagnostic] = [:]
        for item in plan.items {
            if case .invalid(let file, let diagnostics, _) = item.change, let d = diagnostics.first { invalid[file] = d }
        }
        #expect(Set(invalid.keys) == ["templates/link.json", "templates/climb.json", "templates/shadow.json", "templates/metadata.json"])
        for (file, d) in invalid {
            #expect(d.file == file)
            #expect(d.line == 7, "\(d)")
            #expect(d.path.description.hasPrefix("$.properties.customize[0]."), "\(d)")
        }
        #expect(
            invalid["templates/link.json"]?.message.contains("symbolic link to /etc/shadow, outside the repository") == true,
            "\(invalid["templates/link.json"]!)")
        #expect(invalid["templates/climb.json"]?.message.contains("climbs out of the repository") == true)
        #expect(invalid["templates/shadow.json"]?.message.contains("allowedFileRoots is empty") == true)
        #expect(invalid["templates/metadata.json"]?.message.contains("(link-local)") == true)

        let r = try await ctl.reconcileOnce(executeRuns: false)
        #expect(Set(r.report.outcomes.filter { $0.item.action == .create }.map(\.item.name)) == ["web", "common"], "\(r.report.outcomes.map(\.result))")
        let web = try await f.core.template("web")
        #expect(web.provisioningState == .succeeded, "\(web.record.provisioningErrorMessage ?? "")")
        #expect(try String(contentsOfFile: try #require(web.record.artifacts.first).path, encoding: .utf8) == "#!/bin/sh\necho web\n")
        // A link inside the repository is followed there, and staged as the file it points to.
        let common = try await f.core.template("common")
        #expect(try String(contentsOfFile: try #require(common.record.artifacts.first).path, encoding: .utf8) == "#!/bin/sh\necho common\n")
        let shadow = (try? String(contentsOfFile: "/etc/shadow", encoding: .utf8)) ?? "-"
        for a in web.record.artifacts + common.record.artifacts {
            #expect(try String(contentsOfFile: a.path, encoding: .utf8) != shadow)
        }
    }
}
