import Foundation
import KilnTestSupport
import Testing

/// Issue 15's exfiltration attempt as a user would make it: a template whose File customizer names
/// `file:///etc/shadow` (and one that reaches it through a symbolic link, one that asks the cloud metadata
/// address), pushed to the watched repository or given to `kiln template create`. Each is refused before
/// anything is read, with the file, line, JSON path and code; nothing of the host reaches the staging area.
@Suite struct TrustCLITests {
    static let shadowStep = #"{"type": "File", "name": "loot", "sourceUri": "file:///etc/shadow", "destination": "/tmp/loot"}"#

    @Test func theExfiltrationAttemptIsRefusedViaGitAndViaCreate() async throws {
        let repo = try GitRemote("trust")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        let data = repo.dir + "/data"
        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        try repo.write("scripts/web.sh", "#!/bin/sh\necho web\n")
        try repo.write("templates/shadow.json", TemplateText.oneStep("shadow", Self.shadowStep))
        try repo.write("templates/web.json", TemplateText.oneStep("web", #"{"type": "Shell", "name": "s", "scriptUri": "../scripts/web.sh"}"#))
        try repo.write(
            "templates/metadata.json",
            TemplateText.oneStep("metadata", #"{"type": "Shell", "name": "s", "scriptUri": "https://169.254.169.254/latest/user-data"}"#))
        try repo.write(
            "templates/local.json",
            TemplateText.oneStep(
                "local", #"{"type": "Shell", "name": "s", "scriptUri": "http://127.0.0.1:9/x.sh", "sha256Checksum": "\#(String(repeating: "0", count: 64))"}"#))
        try FileManager.default.createSymbolicLink(atPath: repo.work + "/scripts/passwd.sh", withDestinationPath: "/etc/passwd")
        try repo.write("templates/link.json", TemplateText.oneStep("link", #"{"type": "Shell", "name": "s", "scriptUri": "../scripts/passwd.sh"}"#))
        try repo.push("an exfiltration attempt among good templates")

        // The plan names each bad reference: file, line, JSON path, code, why.
        let plan = try await spawnAndWait([CLITests.binary, "plan", "--repo", repo.remote, "--data-dir", data])
        let planText = plan.stdout + plan.stderr
        #expect(
            planText.contains("templates/shadow.json:7: $.properties.customize[0].sourceUri: ") && planText.contains("allowedFileRoots is empty"), "\(planText)"
        )
        #expect(planText.contains("templates/metadata.json:7: $.properties.customize[0].scriptUri: "), "\(planText)")
        #expect(planText.contains("templates/local.json:7: $.properties.customize[0].scriptUri: ") && planText.contains("(loopback)"), "\(planText)")
        #expect(
            planText.contains("templates/link.json:7: $.properties.customize[0].scriptUri: NoCustomizerScript: ")
                && planText.contains("symbolic link to /etc/passwd"), "\(planText)")
        #expect(planText.contains("create web [templates/web.json]"), "\(planText)")

        // Reconcile creates the good one only; nothing from /etc is staged anywhere.
        _ = try await spawnAndWait([CLITests.binary, "reconcile", "--repo", repo.remote, "--once", "--data-dir", data])
        let list = try await spawnAndWait([CLITests.binary, "template", "list", "--data-dir", data, "--output", "json"])
        #expect(list.stdout.contains("\"name\" : \"web\"") && !list.stdout.contains("\"name\" : \"shadow\""), "\(list.stdout)")
        for secret in ["root:", "daemon:x:"] {
            let grep = try await spawnAndWait(["/bin/grep", "-r", "-a", "-F", "-l", secret, data + "/staging"])
            #expect(grep.status == 1, "\(secret) found in staging: \(grep.stdout)")
        }

        // The same template through the CLI: refused with the diagnostic, nothing created.
        let file = repo.work + "/templates/shadow.json"
        let create = try await spawnAndWait([CLITests.binary, "template", "create", file, "--data-dir", data])
        #expect(create.status == 1)
        #expect(
            create.stderr.contains("\(file):7: $.properties.customize[0].sourceUri: ") && create.stderr.contains("allowedFileRoots is empty"),
            "\(create.stderr)")
        let after = try await spawnAndWait([CLITests.binary, "template", "list", "--data-dir", data, "--output", "json"])
        #expect(!after.stdout.contains("\"name\" : \"shadow\""))

        // A configured root admits files under it, and only those.
        let allowed = repo.dir + "/allowed"
        try FileManager.default.createDirectory(atPath: allowed, withIntermediateDirectories: true)
        try "public\n".write(toFile: allowed + "/motd", atomically: true, encoding: .utf8)
        try "artifacts:\n  allowedFileRoots: [\(allowed)]\n".write(toFile: repo.dir + "/kiln-config.yaml", atomically: true, encoding: .utf8)
        let good = try TemplateCLITests.project("motd") { _ in
            TemplateText.oneStep("motd", #"{"type": "File", "name": "m", "sourceUri": "file://\#(allowed)/motd", "destination": "/etc/motd"}"#)
        }
        let made = try await spawnAndWait([CLITests.binary, "template", "create", good, "--data-dir", data, "--config", repo.dir + "/kiln-config.yaml"])
        #expect(made.status == 0, "\(made.stderr)")
        let still = try await spawnAndWait([CLITests.binary, "template", "create", file, "--data-dir", data, "--config", repo.dir + "/kiln-config.yaml"])
        #expect(still.status == 1 && still.stderr.contains("outside artifacts.allowedFileRoots"), "\(still.stderr)")
    }
}
