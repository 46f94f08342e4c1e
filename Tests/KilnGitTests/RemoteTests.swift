import Foundation
import KilnGit
import KilnTestSupport
import Testing

@Suite struct RemoteTests {
    let me = GitSignature(name: "Kiln", email: "kiln@example.com")

    /// A bare "server" repository with one commit on main, pushed by the git CLI from a clone.
    func server(_ dir: String) throws -> (url: String, work: String) {
        let remote = dir + "/remote.git"
        _ = try git("init", "-q", "--bare", remote, in: dir)
        let work = dir + "/work"
        _ = try git("clone", "-q", remote, work, in: dir)
        try "{}\n".write(toFile: work + "/t.json", atomically: true, encoding: .utf8)
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "first", in: work)
        _ = try git("push", "-q", "origin", "HEAD:refs/heads/main", in: work)
        return ("file://" + remote, work)
    }

    @Test func lsRemoteThenFetchOnlyWhatMoved() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (url, work) = try server(dir)
        let mirror = try GitRepository.initBare(dir + "/mirror.git")
        let heads = try await mirror.remoteHeads(url)
        let main = try #require(heads.first { $0.name == "refs/heads/main" })
        #expect(main.id.hex == (try git("rev-parse", "HEAD", in: work)))
        #expect(try await mirror.resolve("refs/heads/main") == nil)
        try await mirror.fetch(url, refspecs: ["+refs/heads/main:refs/heads/main"])
        #expect(try await mirror.resolve("refs/heads/main") == main.id)
        #expect(try await mirror.file("t.json", at: main.id) == Data("{}\n".utf8))

        // Someone pushes; the advertised head moves; a fetch brings it.
        try "{\"x\":1}\n".write(toFile: work + "/t.json", atomically: true, encoding: .utf8)
        _ = try git("commit", "-q", "-am", "second", in: work)
        _ = try git("push", "-q", "origin", "HEAD:refs/heads/main", in: work)
        let moved = try #require(try await mirror.remoteHeads(url).first { $0.name == "refs/heads/main" })
        #expect(moved.id != main.id)
        try await mirror.fetch(url, refspecs: ["+refs/heads/main:refs/heads/main"])
        #expect(try await mirror.resolve("refs/heads/main") == moved.id)
    }

    @Test func pushAndTheNonFastForwardRejection() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (url, work) = try server(dir)
        let mirror = try GitRepository.initBare(dir + "/mirror.git")
        let first = try await mirror.commit(files: ["status/a.json": Data("1".utf8)], on: "refs/heads/kiln/status", message: "a: accepted", author: me)
        try await mirror.push(url, refspecs: ["refs/heads/kiln/status:refs/heads/kiln/status"])
        #expect(try git("ls-remote", url, "refs/heads/kiln/status", in: dir).hasPrefix(first.hex))

        // Another writer moves the remote branch; our next commit, built on the old tip, is refused.
        _ = try git("fetch", "-q", "origin", "kiln/status", in: work)
        _ = try git("checkout", "-q", "-b", "st", "FETCH_HEAD", in: work)
        try "other\n".write(toFile: work + "/other.txt", atomically: true, encoding: .utf8)
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "someone else", in: work)
        _ = try git("push", "-q", "origin", "st:refs/heads/kiln/status", in: work)
        try await mirror.commit(files: ["status/a.json": Data("2".utf8)], on: "refs/heads/kiln/status", message: "a: running", author: me)
        do {
            try await mirror.push(url, refspecs: ["refs/heads/kiln/status:refs/heads/kiln/status"])
            Issue.record("a non-fast-forward push went through")
        } catch {
            #expect(error.isRejection, "\(error)")
        }
        // Fetch, rebuild on the new tip, push: nothing is lost.
        try await mirror.fetch(url, refspecs: ["+refs/heads/kiln/status:refs/heads/kiln/status"])
        let tip = try #require(try await mirror.resolve("refs/heads/kiln/status"))
        try await mirror.commit(files: ["status/a.json": Data("2".utf8)], on: "refs/heads/kiln/status", message: "a: running", author: me)
        try await mirror.push(url, refspecs: ["refs/heads/kiln/status:refs/heads/kiln/status"])
        let log = try git("--git-dir", dir + "/remote.git", "log", "--format=%s", "kiln/status", in: dir)
        #expect(log.split(separator: "\n") == ["a: running", "someone else", "a: accepted"])
        #expect(try await mirror.file("other.txt", at: tip) == Data("other\n".utf8))
    }

    @Test func aMissingRemoteIsAClearError() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mirror = try GitRepository.initBare(dir + "/mirror.git")
        do {
            _ = try await mirror.remoteHeads("file://\(dir)/nope.git")
            Issue.record("listed a missing remote")
        } catch {
            #expect(error.description.contains("connect to file://\(dir)/nope.git"), "\(error)")
        }
        #expect(GitRepository.redact("https://user:s3cret@example.com/r.git") == "https://****:****@example.com/r.git")
        #expect(GitRepository.redact("https://ghp_token123@example.com/r.git") == "https://****@example.com/r.git", "a token as the user name")
        #expect(GitRepository.redact("ssh://git@example.com/r.git") == "ssh://git@example.com/r.git", "an SSH user is no secret")
    }
}
