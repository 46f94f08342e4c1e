import Foundation
import Testing

/// deploy/ as CI checks it: scripts/check-deploy with the built binary (install.sh into a throwaway root,
/// systemd-analyze verify, the Containerfile's RUN steps against README.md, the Kubernetes manifests).
@Suite struct DeployTests {
    @Test func checkDeployPasses() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: CLITests.binary), "build the kiln binary first (swift build): \(CLITests.binary)")
        let script = CLITests.repoRoot.appendingPathComponent("scripts/check-deploy").path
        let r = try await spawnAndWait(["/bin/bash", script, CLITests.binary])
        #expect(r.status == 0, "scripts/check-deploy failed:\n\(r.stdout)\(r.stderr)")
    }
}
