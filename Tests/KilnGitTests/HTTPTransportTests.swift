import Foundation
import KilnCore
import KilnGit
import KilnGitOps
import KilnStore
import KilnSystem
import KilnTestSupport
import Testing

/// A private repository over smart HTTP (git http-backend behind Basic auth, `PrivateGitServer`): the token
/// is sent when the server asks for it, fetch and push work with it, a missing or wrong token ends in a clear
/// authentication error after a bounded number of attempts, and the token is written nowhere in the mirror.
@Suite(.serialized) struct HTTPTransportTests {
    @Test func aPrivateRepositoryOverHTTPWithAToken() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "git-" + UUID().uuidString.lowercased()
        let remote = dir + "/remote.git"
        _ = try git("init", "-q", "--bare", "-b", "main", remote, in: dir)
        _ = try git("config", "http.receivepack", "true", in: remote)
        _ = try git("clone", "-q", remote, dir + "/work", in: dir)
        try "subscription: 11111111-2222-3333-4444-555555555555\nresourceGroup: rg-http\nlocation: westeurope\n"
            .write(toFile: dir + "/work/kiln.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/work/templates", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/work/scripts", withIntermediateDirectories: true)
        try "#!/bin/sh\necho one\n".write(toFile: dir + "/work/scripts/setup.sh", atomically: true, encoding: .utf8)
        try GitOpsFixture.template("over-http").write(toFile: dir + "/work/templates/over-http.json", atomically: true, encoding: .utf8)
        _ = try git("add", ".", in: dir + "/work")
        _ = try git("commit", "-q", "-m", "a template", in: dir + "/work")
        _ = try git("push", "-q", "origin", "HEAD:main", in: dir + "/work")
        let head = try git("rev-parse", "HEAD", in: dir + "/work")

        let server = try await PrivateGitServer.start(root: dir, token: token)
        defer { server.stop() }
        let url = server.url("remote.git")

        // Without credentials, and with a wrong token: refused, with an error that says it was authentication.
        let mirror = try GitRepository.initBare(dir + "/mirror.git")
        await #expect {
            _ = try await mirror.remoteHeads(url)
        } throws: { "\($0)".lowercased().contains("auth") || "\($0)".contains("401") }
        await #expect {
            _ = try await mirror.remoteHeads(url, credentials: .token("wrong"), maxAttempts: 2)
        } throws: { "\($0)".contains("authentication failed after 2 attempts") }
        #expect(server.requests.allSatisfy { $0.hasSuffix(" 401") }, "\(server.requests)")

        // With the token: ls-remote and fetch.
        let heads = try await mirror.remoteHeads(url, credentials: .token(token))
        #expect(heads.first { $0.name == "refs/heads/main" }?.id.hex == head)
        try await mirror.fetch(url, refspecs: ["+refs/heads/main:refs/heads/main"], credentials: .token(token))
        #expect(try await mirror.resolve("refs/heads/main")?.hex == head)
        #expect(server.requests.contains { $0.hasPrefix("POST /remote.git/git-upload-pack") && $0.hasSuffix(" 200") }, "\(server.requests)")

        // The reconciler against it: desired state fetched, status and note pushed back over HTTP.
        let paths = KilnPaths(dataDir: dir + "/data")
        let core = KilnCore(paths: paths, store: try KilnDatabase(path: paths.database))
        let controller = Controller(
            core: core, mirror: try RepositoryMirror.open(dataDir: paths.dataDir, source: GitSource(url: url, credentials: .token(token))), launchWorkers: {})
        let once = try await controller.reconcileOnce(executeRuns: false)
        #expect(once.report.outcomes.map(\.item.name) == ["over-http"] && once.report.failed.isEmpty, "\(once.report.outcomes.map(\.result))")
        #expect(try git("log", "-1", "--format=%s", "kiln/status", in: remote).hasPrefix("over-http: Accepted"))
        #expect(server.requests.contains { $0.hasPrefix("POST /remote.git/git-receive-pack") && $0.hasSuffix(" 200") }, "\(server.requests)")

        // The token is nowhere on disk but in the server's own directory: not in the mirror's config, refs or
        // objects, not in the data directory, not in the status branch.
        for place in [dir + "/mirror.git", paths.dataDir] {
            let grep = try await ProcessRunner.run("grep", ["-r", "-a", "-F", "-l", token, place])
            #expect(grep.status == 1, "the token is in \(place): \(grep.stdout)")
        }
        #expect(!(try git("log", "-p", "--all", in: remote)).contains(token))
    }
}
