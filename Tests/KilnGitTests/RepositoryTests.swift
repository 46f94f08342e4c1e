import Foundation
import KilnGit
import KilnTestSupport
import Testing

@Suite struct RepositoryTests {
    let me = GitSignature(name: "Kiln", email: "kiln@example.com")

    @Test func commitsWithoutAWorkTreeAreRealCommits() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = try GitRepository.initBare(dir + "/status.git")
        #expect(try await repo.resolve("refs/heads/kiln/status") == nil)
        let first = try await repo.commit(
            files: ["status/rg/a.json": Data("{\"a\":1}\n".utf8), "status/rg/b.json": Data("b\n".utf8)],
            on: "refs/heads/kiln/status", message: "a: Succeeded (abc1234)\n\nKiln-Template: a\n", author: me)
        let second = try await repo.commit(
            files: ["status/rg/b.json": nil, "status/other/c.json": Data("c\n".utf8)],
            on: "refs/heads/kiln/status", message: "b: deleted", author: me)
        #expect(try await repo.resolve("refs/heads/kiln/status") == second)
        // The git CLI sees exactly that.
        let log = try git("--git-dir", dir + "/status.git", "log", "--format=%H %s", "kiln/status", in: dir)
        #expect(log.split(separator: "\n").map(String.init) == ["\(second) b: deleted", "\(first) a: Succeeded (abc1234)"])
        #expect(try git("--git-dir", dir + "/status.git", "show", "kiln/status:status/rg/a.json", in: dir) == "{\"a\":1}")
        #expect(try git("--git-dir", dir + "/status.git", "log", "-1", "--format=%(trailers:key=Kiln-Template,valueonly)", first.hex, in: dir) == "a")
        let files = try await repo.files(at: second).map(\.path).sorted()
        #expect(files == ["status/other/c.json", "status/rg/a.json"])
        #expect(try await repo.file("status/rg/b.json", at: second) == nil)
        #expect(try await repo.file("status/rg/b.json", at: first) == Data("b\n".utf8))
    }

    @Test func aWriterThatReadAnOldTipIsRefused() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = try GitRepository.initBare(dir + "/r.git")
        let a = try await repo.commit(files: ["x": Data("1".utf8)], on: "refs/heads/s", message: "a", author: me)
        let b = try await repo.commit(files: ["x": Data("2".utf8)], on: "refs/heads/s", message: "b", author: me)
        do {
            try await repo.commit(files: ["x": Data("3".utf8)], on: "refs/heads/s", message: "stale", author: me, parent: .some(a))
            Issue.record("a commit on a stale parent moved the ref")
        } catch {
            #expect(error.isModified, "\(error)")
        }
        #expect(try await repo.resolve("refs/heads/s") == b)
    }

    @Test func readsTreesAndDiffsWithRenamesFromARepositoryMadeByGit() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let work = dir + "/work"
        try FileManager.default.createDirectory(atPath: work + "/templates/nested", withIntermediateDirectories: true)
        _ = try git("init", "-q", in: work)
        try "one\n".write(toFile: work + "/templates/a.json", atomically: true, encoding: .utf8)
        try String(repeating: "a stable line of a script\n", count: 20).write(toFile: work + "/templates/nested/b.sh", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: work + "/templates/nested/b.sh")
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "first", in: work)
        let c1 = try git("rev-parse", "HEAD", in: work)
        _ = try git("mv", "templates/nested/b.sh", "templates/c.sh", in: work)
        try "two\n".write(toFile: work + "/templates/a.json", atomically: true, encoding: .utf8)
        try "new\n".write(toFile: work + "/templates/d.json", atomically: true, encoding: .utf8)
        _ = try git("add", "-A", in: work)
        _ = try git("commit", "-q", "-m", "second", in: work)
        let c2 = try git("rev-parse", "HEAD", in: work)

        let repo = try GitRepository.open(work)
        let id1 = try #require(ObjectID(hex: c1)), id2 = try #require(ObjectID(hex: c2))
        #expect(try await repo.resolve("HEAD") == id2)
        #expect(try await repo.resolve("HEAD~1") == id1)
        let files = try await repo.files(at: id1)
        #expect(files.map(\.path).sorted() == ["templates/a.json", "templates/nested/b.sh"])
        #expect(files.first { $0.path.hasSuffix("b.sh") }?.executable == true)
        #expect(try await repo.file("templates/a.json", at: id1) == Data("one\n".utf8))
        #expect(try await repo.message(of: id2) == "second\n")

        let changes = Set(try await repo.changes(from: id1, to: id2))
        #expect(
            changes == [
                TreeChange(kind: .modified, oldPath: "templates/a.json", newPath: "templates/a.json"),
                TreeChange(kind: .renamed, oldPath: "templates/nested/b.sh", newPath: "templates/c.sh"),
                TreeChange(kind: .added, oldPath: nil, newPath: "templates/d.json")
            ])
        #expect(try await repo.changes(from: nil, to: id1).count == 2)
    }

    @Test func notesShowUpInGitLog() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let work = dir + "/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        _ = try git("init", "-q", in: work)
        _ = try git("commit", "-q", "--allow-empty", "-m", "change a template", in: work)
        let head = try #require(ObjectID(hex: try git("rev-parse", "HEAD", in: work)))
        let repo = try GitRepository.open(work)
        try await repo.setNote("debian-12-base: Succeeded (run 1234)", on: head, notesRef: "refs/notes/kiln", author: me)
        try await repo.setNote("debian-12-base: Succeeded (run 5678)", on: head, notesRef: "refs/notes/kiln", author: me)
        #expect(try await repo.note(on: head, notesRef: "refs/notes/kiln") == "debian-12-base: Succeeded (run 5678)")
        let log = try git("log", "--notes=kiln", "-1", in: work)
        #expect(log.contains("Notes (kiln):") && log.contains("run 5678"), "\(log)")
    }

    @Test func errorsCarryLibgit2sMessage() async throws {
        do {
            _ = try GitRepository.open("/nonexistent/repo")
            Issue.record("opened a missing repository")
        } catch {
            #expect(error.description.contains("open /nonexistent/repo"))
            #expect(error.isNotFound)
        }
    }
}
