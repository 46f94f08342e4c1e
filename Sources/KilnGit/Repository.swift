import CLibGit2
import Foundation

/// A libgit2 failure: the return code and libgit2's message, read on the thread that made the call.
public struct GitError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var message: String
    /// What Kiln was doing.
    public var operation: String
    /// A network call given up for want of progress (libgit2 1.5 has no error code of its own for it).
    public var timedOut = false

    public var description: String { "\(operation): \(message) (libgit2 error \(code))" }
    public var isNotFound: Bool { code == GIT_ENOTFOUND.rawValue }
    /// The reference moved since it was read (a commit's first parent is no longer the tip).
    public var isModified: Bool { code == GIT_EMODIFIED.rawValue }

    /// Builds the error from `git_error_last()`. Must run right after the failing call, before any `await`:
    /// libgit2 keeps the last error per thread.
    static func last(_ code: Int32, _ operation: String) -> GitError {
        let message = git_error_last().map { String(cString: $0.pointee.message) } ?? "unknown error"
        return GitError(code: code, message: message, operation: operation)
    }
}

/// Runs a libgit2 call and turns a negative return into a `GitError` at once.
@inline(__always)
func check(_ operation: @autoclosure () -> String, _ rc: Int32) throws(GitError) {
    if rc < 0 { throw GitError.last(rc, operation()) }
}

/// A git object id.
public struct ObjectID: Sendable, Hashable, CustomStringConvertible {
    public var hex: String
    public init?(hex: String) {
        guard hex.count == 40, hex.allSatisfy(\.isHexDigit) else { return nil }
        self.hex = hex.lowercased()
    }
    init(_ oid: git_oid) {
        var o = oid
        var buf = [CChar](repeating: 0, count: 41)
        git_oid_tostr(&buf, 41, &o)
        hex = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
    var oid: git_oid {
        var o = git_oid()
        _ = git_oid_fromstr(&o, hex)
        return o
    }
    public var description: String { hex }
    public var short: String { String(hex.prefix(7)) }
}

/// A file in a tree: its path from the root, blob id and mode.
public struct TreeFile: Sendable, Hashable {
    public var path: String
    public var blob: ObjectID
    public var executable: Bool
    /// A symbolic link: the blob holds the link's target path, not file content.
    public var isSymlink = false
}

/// One commit as `git log` shows it.
public struct CommitInfo: Sendable, Hashable {
    public var id: ObjectID
    public var parents: [ObjectID]
    public var author: GitSignature
    public var date: Date
    public var message: String
    /// The first line of the message.
    public var subject: String { String(message.prefix { $0 != "\n" }) }
    /// `Key: value` trailers: the last paragraph of the message.
    public var trailers: [String: String] {
        var out: [String: String] = [:]
        let paragraphs = message.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n\n")
        guard paragraphs.count > 1, let last = paragraphs.last else { return out }
        for line in last.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}

/// One change between two trees.
public struct TreeChange: Sendable, Hashable {
    public enum Kind: String, Sendable { case added, deleted, modified, renamed }
    public var kind: Kind
    public var oldPath: String?
    public var newPath: String?
    public init(kind: Kind, oldPath: String?, newPath: String?) {
        self.kind = kind
        self.oldPath = oldPath
        self.newPath = newPath
    }
}

/// Who a commit is by.
public struct GitSignature: Sendable, Hashable {
    public var name: String
    public var email: String
    public init(name: String, email: String) {
        self.name = name
        self.email = email
    }
}

/// A git repository, confined to one actor: libgit2 objects are not thread-safe, and every call and the
/// reading of its error happen in one synchronous stretch of an actor method (never across an `await`).
/// The actor runs on a thread of its own (`ThreadExecutor`): libgit2's network calls block, and must not block
/// the cooperative pool that every other repository and the HTTP endpoints share.
public actor GitRepository {
    nonisolated(unsafe) let pointer: OpaquePointer
    public nonisolated let path: String
    let executor: ThreadExecutor

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    init(pointer: OpaquePointer, path: String) {
        self.pointer = pointer
        self.path = path
        self.executor = ThreadExecutor(name: "git \((path as NSString).lastPathComponent)")
    }

    deinit {
        git_repository_free(pointer)
        executor.shutdown()
    }

    /// Opens a repository (bare or not).
    public static func open(_ path: String) throws(GitError) -> GitRepository {
        LibGit2.initialize()
        var repo: OpaquePointer?
        try check("open \(path)", git_repository_open(&repo, path))
        return GitRepository(pointer: repo!, path: path)
    }

    /// Creates a bare repository (or opens the one that is there).
    public static func initBare(_ path: String) throws(GitError) -> GitRepository {
        LibGit2.initialize()
        var repo: OpaquePointer?
        if git_repository_open_bare(&repo, path) == 0, let repo { return GitRepository(pointer: repo, path: path) }
        try check("init \(path)", git_repository_init(&repo, path, 1))
        return GitRepository(pointer: repo!, path: path)
    }

    // MARK: References

    /// The commit a reference (`refs/heads/main`) or revision (`main~1`, a sha) points at; nil when absent.
    public func resolve(_ revision: String) throws(GitError) -> ObjectID? {
        var obj: OpaquePointer?
        let rc = git_revparse_single(&obj, pointer, revision + "^{commit}")
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check("resolve \(revision)", rc)
        defer { git_object_free(obj) }
        return ObjectID(git_object_id(obj).pointee)
    }

    // MARK: Reading

    /// Every file in the tree of `commit`, recursively, without a work tree.
    public func files(at commit: ObjectID) throws(GitError) -> [TreeFile] {
        let tree = try commitTree(commit)
        defer { git_tree_free(tree) }
        final class Box { var files: [TreeFile] = [] }
        let box = Box()
        let rc = withExtendedLifetime(box) {
            git_tree_walk(
                tree, GIT_TREEWALK_PRE,
                { root, entry, payload in
                    guard let entry, let payload else { return 0 }
                    guard git_tree_entry_type(entry) == GIT_OBJECT_BLOB else { return 0 }
                    let b = Unmanaged<Box>.fromOpaque(payload).takeUnretainedValue()
                    let name = String(cString: git_tree_entry_name(entry))
                    let dir = root.map { String(cString: $0) } ?? ""
                    let mode = git_tree_entry_filemode(entry)
                    b.files.append(
                        TreeFile(
                            path: dir + name, blob: ObjectID(git_tree_entry_id(entry).pointee),
                            executable: mode == GIT_FILEMODE_BLOB_EXECUTABLE, isSymlink: mode == GIT_FILEMODE_LINK))
                    return 0
                }, Unmanaged.passUnretained(box).toOpaque())
        }
        try check("walk the tree of \(commit.short)", rc)
        return box.files
    }

    /// A blob's bytes.
    public func blob(_ id: ObjectID) throws(GitError) -> Data {
        var blob: OpaquePointer?
        var oid = id.oid
        try check("read blob \(id.short)", git_blob_lookup(&blob, pointer, &oid))
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard size > 0, let raw = git_blob_rawcontent(blob) else { return Data() }
        return Data(bytes: raw, count: size)
    }

    /// Several blobs in one call: each call into this actor is a hop to its thread, which costs tens of
    /// microseconds; reading thousands of files one call each would spend more time hopping than reading.
    public func blobs(_ ids: [ObjectID]) throws(GitError) -> [ObjectID: Data] {
        var out: [ObjectID: Data] = [:]
        out.reserveCapacity(ids.count)
        for id in ids where out[id] == nil { out[id] = try blob(id) }
        return out
    }

    /// The file at `path` in `commit`'s tree, or nil.
    public func file(_ path: String, at commit: ObjectID) throws(GitError) -> Data? {
        guard let (id, type) = try entry(path, at: commit), type == GIT_OBJECT_BLOB else { return nil }
        return try blob(id)
    }

    /// The id and type of the tree entry at `path` in `commit`, or nil.
    func entry(_ path: String, at commit: ObjectID) throws(GitError) -> (ObjectID, git_object_t)? {
        let tree = try commitTree(commit)
        defer { git_tree_free(tree) }
        var entry: OpaquePointer?
        let rc = git_tree_entry_bypath(&entry, tree, path)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check("find \(path) at \(commit.short)", rc)
        defer { git_tree_entry_free(entry) }
        return (ObjectID(git_tree_entry_id(entry).pointee), git_tree_entry_type(entry))
    }

    func commitTree(_ commit: ObjectID) throws(GitError) -> OpaquePointer {
        var c: OpaquePointer?
        var oid = commit.oid
        try check("find commit \(commit.short)", git_commit_lookup(&c, pointer, &oid))
        defer { git_commit_free(c) }
        var tree: OpaquePointer?
        try check("read the tree of \(commit.short)", git_commit_tree(&tree, c))
        return tree!
    }

    /// A commit's message.
    public func message(of commit: ObjectID) throws(GitError) -> String {
        var c: OpaquePointer?
        var oid = commit.oid
        try check("find commit \(commit.short)", git_commit_lookup(&c, pointer, &oid))
        defer { git_commit_free(c) }
        return git_commit_message(c).map { String(cString: $0) } ?? ""
    }

    /// A commit's metadata: what `git log` shows.
    public func commitInfo(_ commit: ObjectID) throws(GitError) -> CommitInfo {
        var c: OpaquePointer?
        var oid = commit.oid
        try check("find commit \(commit.short)", git_commit_lookup(&c, pointer, &oid))
        defer { git_commit_free(c) }
        var parents: [ObjectID] = []
        for i in 0..<git_commit_parentcount(c) {
            if let p = git_commit_parent_id(c, i) { parents.append(ObjectID(p.pointee)) }
        }
        let author = git_commit_author(c)!.pointee
        return CommitInfo(
            id: commit, parents: parents,
            author: GitSignature(name: String(cString: author.name), email: String(cString: author.email)),
            date: Date(timeIntervalSince1970: TimeInterval(author.when.time)),
            message: git_commit_message(c).map { String(cString: $0) } ?? "")
    }

    /// Commits reachable from `tip` along first parents, newest first, at most `limit`; only those touching
    /// `path` when given (compared by the blob at `path`, so it is one tree lookup per commit).
    public func log(from tip: ObjectID, limit: Int, touching path: String? = nil) throws(GitError) -> [CommitInfo] {
        var out: [CommitInfo] = []
        var next: ObjectID? = tip
        while let id = next, out.count < limit {
            let info = try commitInfo(id)
            next = info.parents.first
            if let path {
                let here = try blobID(path, at: id)
                let before = try info.parents.first.flatMap { p throws(GitError) in try blobID(path, at: p) }
                if here == before { continue }
            }
            out.append(info)
        }
        return out
    }

    /// The blob id of `path` at `commit`, or nil.
    public func blobID(_ path: String, at commit: ObjectID) throws(GitError) -> ObjectID? {
        try entry(path, at: commit)?.0
    }

    /// Points `ref` at `target` (created or moved, no checks): for refs the caller alone owns.
    public func setReference(_ ref: String, to target: ObjectID) throws(GitError) {
        var out: OpaquePointer?
        var oid = target.oid
        try check("set \(ref)", git_reference_create(&out, pointer, ref, &oid, 1, "kiln"))
        git_reference_free(out)
    }

    // MARK: Diff

    /// What changed from `old` to `new` (nil: from an empty tree), with renames detected.
    public func changes(from old: ObjectID?, to new: ObjectID) throws(GitError) -> [TreeChange] {
        let newTree = try commitTree(new)
        defer { git_tree_free(newTree) }
        let oldTree = try old.map { id throws(GitError) in try commitTree(id) }
        defer { if let oldTree { git_tree_free(oldTree) } }
        var diff: OpaquePointer?
        var opts = git_diff_options()
        git_diff_options_init(&opts, UInt32(GIT_DIFF_OPTIONS_VERSION))
        try check("diff \(old?.short ?? "empty")..\(new.short)", git_diff_tree_to_tree(&diff, pointer, oldTree, newTree, &opts))
        defer { git_diff_free(diff) }
        var find = git_diff_find_options()
        git_diff_find_options_init(&find, UInt32(GIT_DIFF_FIND_OPTIONS_VERSION))
        find.flags = GIT_DIFF_FIND_RENAMES.rawValue
        try check("find renames", git_diff_find_similar(diff, &find))
        var out: [TreeChange] = []
        for i in 0..<git_diff_num_deltas(diff) {
            guard let d = git_diff_get_delta(diff, i)?.pointee else { continue }
            let oldPath = d.old_file.path.map { String(cString: $0) }
            let newPath = d.new_file.path.map { String(cString: $0) }
            switch d.status {
            case GIT_DELTA_ADDED: out.append(TreeChange(kind: .added, oldPath: nil, newPath: newPath))
            case GIT_DELTA_DELETED: out.append(TreeChange(kind: .deleted, oldPath: oldPath, newPath: nil))
            case GIT_DELTA_RENAMED: out.append(TreeChange(kind: .renamed, oldPath: oldPath, newPath: newPath))
            default: out.append(TreeChange(kind: .modified, oldPath: oldPath, newPath: newPath))
            }
        }
        return out
    }

    // MARK: Writing

    /// Commits `files` (path → content; nil deletes) on top of `ref`'s tip without a work tree: blobs, an
    /// in-memory index seeded from the parent's tree, a tree, a commit. The ref moves only if it still points
    /// at the parent that was read (else `GitError.isModified`), so concurrent writers never lose commits.
    @discardableResult
    public func commit(
        files: [String: Data?], on ref: String, message: String, author: GitSignature, date: Date = Date(),
        parent expected: ObjectID?? = nil
    ) throws(GitError) -> ObjectID {
        // `parent`: build on this commit (what the caller read) instead of the ref's tip now.
        let parent: ObjectID?
        if let expected { parent = expected } else { parent = try resolve(ref) }
        var index: OpaquePointer?
        try check("create an index", git_index_new(&index))
        defer { git_index_free(index) }
        if let parent {
            let tree = try commitTree(parent)
            defer { git_tree_free(tree) }
            try check("read the tree of \(parent.short)", git_index_read_tree(index, tree))
        }
        for (path, content) in files.sorted(by: { $0.key < $1.key }) {
            guard let content else {
                let rc = git_index_remove_bypath(index, path)
                try check("remove \(path)", rc)
                continue
            }
            var blob = git_oid()
            let rcBlob = content.withUnsafeBytes { buf in git_blob_create_from_buffer(&blob, pointer, buf.baseAddress, buf.count) }
            try check("write the blob of \(path)", rcBlob)
            var entry = git_index_entry()
            entry.mode = GIT_FILEMODE_BLOB.rawValue
            entry.id = blob
            let rc = path.withCString { cpath in
                entry.path = cpath
                return git_index_add(index, &entry)
            }
            try check("add \(path)", rc)
        }
        var treeOid = git_oid()
        try check("write the tree", git_index_write_tree_to(&treeOid, index, pointer))
        var tree: OpaquePointer?
        try check("look up the new tree", git_tree_lookup(&tree, pointer, &treeOid))
        defer { git_tree_free(tree) }
        var sig: UnsafeMutablePointer<git_signature>?
        try check("make a signature", git_signature_new(&sig, author.name, author.email, git_time_t(date.timeIntervalSince1970), 0))
        defer { git_signature_free(sig) }
        var parentCommit: OpaquePointer?
        if let parent {
            var oid = parent.oid
            try check("find commit \(parent.short)", git_commit_lookup(&parentCommit, pointer, &oid))
        }
        defer { if parentCommit != nil { git_commit_free(parentCommit) } }
        var out = git_oid()
        var parents: [OpaquePointer?] = parentCommit.map { [$0] } ?? [nil]
        let rc = git_commit_create(&out, pointer, ref, sig, sig, "UTF-8", message, tree, parentCommit == nil ? 0 : 1, &parents)
        try check("commit on \(ref)", rc)
        return ObjectID(out)
    }

    /// Adds (or replaces) the note on `target` under `notesRef` (`refs/notes/kiln`).
    @discardableResult
    public func setNote(_ text: String, on target: ObjectID, notesRef: String, author: GitSignature, date: Date = Date()) throws(GitError) -> ObjectID {
        var sig: UnsafeMutablePointer<git_signature>?
        try check("make a signature", git_signature_new(&sig, author.name, author.email, git_time_t(date.timeIntervalSince1970), 0))
        defer { git_signature_free(sig) }
        var out = git_oid()
        var t = target.oid
        try check("note on \(target.short)", git_note_create(&out, pointer, notesRef, sig, sig, &t, text, 1))
        return ObjectID(out)
    }

    /// The note on `target`, or nil.
    public func note(on target: ObjectID, notesRef: String) throws(GitError) -> String? {
        var note: OpaquePointer?
        var t = target.oid
        let rc = git_note_read(&note, pointer, notesRef, &t)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check("read the note on \(target.short)", rc)
        defer { git_note_free(note) }
        return git_note_message(note).map { String(cString: $0) }
    }
}
