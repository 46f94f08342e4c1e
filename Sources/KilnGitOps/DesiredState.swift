import Foundation
import KilnCore
import KilnGit
import KilnTemplates

/// A template as the repository wants it at a commit.
///
/// Immutable and shared by reference: the same object flows from the cache through the plan, so ten thousand
/// of them cost ten thousand pointers per plan rather than ten thousand deep copies.
public final class DesiredTemplate: Sendable {
    public let loaded: LoadedTemplate
    /// The file it came from, repository-relative.
    public let file: String
    /// Repository files the template references (scriptUri/sourceUri), path → `git:<blob id>`.
    public let referencedFiles: [String: String]
    /// Each relative reference as written → the blob it resolved to (symlinks followed inside the tree):
    /// what staging reads, so a reference is resolved once, at plan time.
    public let resolvedReferences: [String: ObjectID]
    /// The content hash over the template and those files: what decides "changed".
    public let contentHash: String
    /// The resource id (kept: building it from its parts on every use is measurable at 10,000 templates).
    public let id: String
    /// `id` lower-cased: how resource ids compare.
    public let key: String
    /// The template's name (kept for the same reason: reaching it through `loaded` copies the template).
    public let name: String
    /// What it publishes and builds on (for build order and rebuilds), read once.
    public let lineage: LineageLinks

    public init(
        loaded: LoadedTemplate, file: String, referencedFiles: [String: String], resolvedReferences: [String: ObjectID] = [:],
        contentHash: String
    ) {
        self.loaded = loaded
        self.file = file
        self.referencedFiles = referencedFiles
        self.resolvedReferences = resolvedReferences
        self.contentHash = contentHash
        id = loaded.resourceId.description
        key = id.lowercased()
        name = loaded.template.name
        lineage = LineageLinks(loaded.template)
    }
}

/// A trigger as the repository declares it (a bare trigger file, or a resource of a deployment template).
public struct DesiredTrigger: Sendable, Hashable {
    public var resource: TriggerResource
    public var file: String
    /// Its template's id, lower-cased.
    public var templateKey: String { resource.templateId.lowercased() }
    /// `…/imageTemplates/T/triggers/NAME`, lower-cased: how trigger ids compare.
    public var key: String { "\(resource.templateId)/triggers/\(resource.name)".lowercased() }
}

/// A template file that does not load, with its diagnostics (path, line, code).
public struct InvalidTemplateFile: Sendable {
    public var file: String
    public var diagnostics: [Diagnostic]
}

/// Everything the repository declares at one commit.
public struct DesiredState: Sendable {
    public var commit: ObjectID
    public var config: RepositoryConfig
    public var templates: [DesiredTemplate]
    public var invalid: [InvalidTemplateFile]
    public var galleries: [GalleryImageDefinition]
    public var triggers: [DesiredTrigger] = []
}

/// Results per file, kept between reads so a commit that changes one file of ten thousand parses one, and the
/// other 9,999 cost a few dictionary lookups. Used by one reconciler at a time (not shared across tasks).
public final class DesiredStateCache: @unchecked Sendable {
    struct Entry {
        var templates: [DesiredTemplate] = []
        var galleries: [GalleryImageDefinition] = []
        var triggers: [DesiredTrigger] = []
        var errors: [Diagnostic] = []
        /// Every repository path the result depends on besides the file itself, with the blob it had ("" when
        /// absent): referenced scripts, and the places a reference could have resolved to instead.
        var dependencies: [String: String] = [:]
    }
    /// By file path: the key the entry was computed for, and the entry.
    var entries: [String: (key: String, entry: Entry)] = [:]
    public internal(set) var hits = 0
    public internal(set) var misses = 0
    public init() {}
    public var count: Int { entries.count }

    /// Drops the entries of files that are gone.
    func prune(keeping seen: Set<String>) {
        guard entries.count > seen.count else { return }
        for path in entries.keys where !seen.contains(path) { entries[path] = nil }
    }
}

/// Reads the desired state from a commit's tree, without a work tree.
public enum DesiredStateReader {
    /// - Parameters:
    ///   - cache: results from earlier reads, reused when a file, its parameters file, `kiln.yaml` and every
    ///     file it references have the same blobs; entries for files that are gone are dropped.
    ///   - excluding: path prefixes never read as templates (the controller's own `status/` files).
    ///   - policy: what templates' artifact references may reach (checked as files are decoded).
    public static func read(
        _ repo: GitRepository, at commit: ObjectID, cache: DesiredStateCache? = nil,
        excluding: [String] = [], templatesPath: String? = nil,
        policy: ArtifactPolicy = .untrusted
    ) async throws(GitError) -> DesiredState {
        let files = try await repo.files(at: commit)
        let byPath = Dictionary(files.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        var (config, configDiagnostics, configKey) = try await repositoryConfig(repo, byPath)
        if let templatesPath { config.templatesPath = templatesPath }
        var options = config.applied(to: LoadOptions())
        options.artifactPolicy = policy

        let templatesRoot = config.templatesPath.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let galleriesRoot = config.galleriesPath.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var state = DesiredState(commit: commit, config: config, templates: [], invalid: [], galleries: [])
        if !configDiagnostics.isEmpty { state.invalid.append(InvalidTemplateFile(file: "kiln.yaml", diagnostics: configDiagnostics)) }
        var seen = Set<String>(minimumCapacity: cache?.entries.count ?? 0)
        let scope = "\(configKey)\u{0}\(templatesRoot)\u{0}\(policy)\u{0}"

        func candidate(_ f: TreeFile) -> (isGallery: Bool, sibling: String, parametersFile: TreeFile?, key: String)? {
            guard TemplateLoader.format(forPath: f.path) != nil else { return nil }
            if excluding.contains(where: { f.path.hasPrefix($0) }) || f.path == "kiln.yaml" || f.path == "kiln.yml" { return nil }
            let under = { (root: String) in root.isEmpty || f.path.hasPrefix(root + "/") }
            let isGallery = under(galleriesRoot)
            guard isGallery || (under(templatesRoot) && !TemplateLoader.isParametersFileName(f.path)) else { return nil }
            let sibling = isGallery ? "" : TemplateLoader.siblingParametersPath(for: f.path)
            let parametersFile = isGallery ? nil : byPath[sibling]
            return (isGallery, sibling, parametersFile, scope + f.path + "\u{0}" + f.blob.hex + "\u{0}" + (parametersFile?.blob.hex ?? ""))
        }
        // Files to parse have their blobs read a window at a time: every call into the repository's actor is a
        // hop to its thread (tens of microseconds), and a commit that changes every file would otherwise make one
        // per file. The window is bounded both ways, so a plan with one change looks ahead a little only.
        let sorted = files.sorted(by: { $0.path < $1.path })
        var prefetched: [ObjectID: Data] = [:]
        func read(_ id: ObjectID, from index: Int) async throws(GitError) -> Data {
            if prefetched[id] == nil {
                var ids: [ObjectID] = []
                var j = index
                while j < sorted.count, ids.count < 256, j - index < 512 {
                    let g = sorted[j]
                    if let c = candidate(g), cachedEntry(cache, g, c.key, byPath) == nil {
                        ids.append(g.blob)
                        if let p = c.parametersFile { ids.append(p.blob) }
                    }
                    j += 1
                }
                prefetched = try await repo.blobs(ids)
            }
            if let d = prefetched[id] { return d }
            return try await repo.blob(id)
        }

        for index in sorted.indices {
            let f = sorted[index]
            guard let (isGallery, sibling, parametersFile, key) = candidate(f) else { continue }
            var entry: DesiredStateCache.Entry
            if let hit = cachedEntry(cache, f, key, byPath) {
                entry = hit
                cache?.hits += 1
            } else {
                // Drop the stale result first, so a commit that changes every file never holds two of each.
                cache?.entries[f.path] = nil
                cache?.misses += 1
                var parameters: (path: String, text: String)?
                if let p = parametersFile { parameters = (sibling, String(decoding: try await read(p.blob, from: index), as: UTF8.self)) }
                let text = String(decoding: try await read(f.blob, from: index), as: UTF8.self)
                entry = try await parse(text, f.path, parameters: parameters, options: options, in: byPath, isGallery: isGallery) { id throws(GitError) in
                    String(decoding: try await read(id, from: index), as: UTF8.self)
                }
            }
            cache?.entries[f.path] = (key, entry)
            seen.insert(f.path)
            if !entry.errors.isEmpty { state.invalid.append(InvalidTemplateFile(file: f.path, diagnostics: entry.errors)) }
            (state.galleries, state.templates) = (state.galleries + entry.galleries, state.templates + entry.templates)
            state.triggers += entry.triggers
        }
        cache?.prune(keeping: seen)
        return state
    }

    /// A cache entry still good for `f` at `key`: every file it depends on has the blob it had.
    static func cachedEntry(_ cache: DesiredStateCache?, _ f: TreeFile, _ key: String, _ byPath: [String: TreeFile]) -> DesiredStateCache.Entry? {
        guard let hit = cache?.entries[f.path], hit.key == key,
            hit.entry.dependencies.allSatisfy({ (byPath[$0.key]?.blob.hex ?? "") == $0.value })
        else { return nil }
        return hit.entry
    }

    /// Loads one file (its path inside the repository bounds its relative references) and evaluates it.
    static func parse(
        _ text: String, _ path: String, parameters: (path: String, text: String)?, options: LoadOptions, in byPath: [String: TreeFile],
        isGallery: Bool, linkTarget: (ObjectID) async throws(GitError) -> String
    ) async throws(GitError) -> DesiredStateCache.Entry {
        var fileOptions = options
        fileOptions.repositoryPath = path
        // What a deployment template reads must depend on its content only (results are cached by blob): newGuid()
        // is derived from the file's text, and utcNow() needs a value from the parameters file.
        fileOptions.scope.newGuidSeed = "\(path)\u{0}\(text)\u{0}\(parameters?.text ?? "")"
        fileOptions.scope.refusesClock = true
        let loaded = TemplateLoader.load(text: text, path: path, options: fileOptions, parameters: parameters)
        return try await evaluate(loaded, file: path, in: byPath, isGallery: isGallery, linkTarget: linkTarget)
    }

    /// `kiln.yaml` (or `kiln.yml`): the settings, their problems, and the blob they were read from (part of
    /// every cache key, since the settings change how templates load).
    static func repositoryConfig(_ repo: GitRepository, _ byPath: [String: TreeFile]) async throws(GitError) -> (RepositoryConfig, [Diagnostic], String) {
        for name in ["kiln.yaml", "kiln.yml"] {
            guard let f = byPath[name] else { continue }
            let loaded = TemplateLoader.load(text: String(decoding: try await repo.blob(f.blob), as: UTF8.self), path: name)
            return (loaded.repositoryConfig ?? RepositoryConfig(), loaded.errors, f.blob.hex)
        }
        return (RepositoryConfig(), [], "")
    }

    /// What a loaded file contributes, with the repository paths that result depends on. Relative references
    /// are resolved here, once: next to the template, then from the repository root (`RepositoryPath`), a
    /// symbolic link followed while it stays in the tree. A link out of the repository makes the file invalid
    /// (code, JSON path, line), so nothing is read and the plan shows why.
    static func evaluate(
        _ loaded: LoadedFile, file: String, in byPath: [String: TreeFile], isGallery: Bool,
        linkTarget: (ObjectID) async throws(GitError) -> String
    ) async throws(GitError) -> DesiredStateCache.Entry {
        var entry = DesiredStateCache.Entry()
        if isGallery {
            entry.galleries = loaded.galleryDefinitions
            entry.errors = loaded.errors
            return entry
        }
        guard loaded.isValid else {
            entry.errors = loaded.errors
            return entry
        }
        entry.triggers = loaded.triggers.map { DesiredTrigger(resource: $0, file: file) }
        var errors: [Diagnostic] = []
        for t in loaded.templates {
            var refs: [String: String] = [:], resolved: [String: ObjectID] = [:]
            for r in TemplateArtifact.all(in: t.template) {
                guard case .relative(let reference)? = ArtifactReference(r.reference) else { continue }
                for candidate in RepositoryPath.candidates(reference, templateDirectory: RepositoryPath.directory(of: file)) {
                    entry.dependencies[candidate] = byPath[candidate]?.blob.hex ?? ""
                    guard byPath[candidate] != nil else { continue }
                    switch try await follow(candidate, in: byPath, linkTarget: linkTarget, dependencies: &entry.dependencies) {
                    case .success(let hit):
                        refs[hit.path] = "git:\(hit.blob.hex)"
                        resolved[reference] = hit.blob
                    case .failure(let why):
                        let at = JSONPath(t.resourcePath.components + r.path.components)
                        errors.append(
                            Diagnostic(
                                file: file, position: SourcePosition(line: t.artifactLines[at.description] ?? t.line, column: 1), path: at,
                                code: r.errorCode, message: "\(r.property) '\(reference)': \(why)"))
                    }
                    break
                }
            }
            entry.templates.append(
                DesiredTemplate(
                    loaded: t, file: file, referencedFiles: refs, resolvedReferences: resolved,
                    contentHash: ContentHash.of(t.template, referencedFiles: refs)))
        }
        if !errors.isEmpty {
            entry.templates = []
            entry.triggers = []
            entry.errors = errors
        }
        return entry
    }

    /// The file a tree path stands for: itself, or where its symbolic links lead (up to 8 hops), each hop
    /// inside the repository.
    static func follow(
        _ path: String, in byPath: [String: TreeFile], linkTarget: (ObjectID) async throws(GitError) -> String,
        dependencies: inout [String: String]
    ) async throws(GitError) -> Result<TreeFile, LinkError> {
        var current = path
        for _ in 0..<8 {
            guard let f = byPath[current] else { return .failure(LinkError("the symbolic link \(path) leads to \(current), which is not in the repository")) }
            dependencies[current] = f.blob.hex
            guard f.isSymlink else { return .success(f) }
            let target = try await linkTarget(f.blob)
            guard let next = RepositoryPath.linkTarget(current, target: target) else {
                return .failure(LinkError("\(current) is a symbolic link to \(target), outside the repository; Kiln reads only files inside it"))
            }
            current = next
        }
        return .failure(LinkError("\(path): too many levels of symbolic links"))
    }

    struct LinkError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}

/// Relative artifacts of a template from a repository: the blobs its references resolved to when the commit was
/// planned (`DesiredTemplate.resolvedReferences`), read from the mirror.
public struct CommitArtifactSource: RelativeArtifactSource {
    public let repo: GitRepository
    public let commit: ObjectID
    public let blobs: [String: ObjectID]

    public init(repo: GitRepository, commit: ObjectID, resolved blobs: [String: ObjectID]) {
        self.repo = repo
        self.commit = commit
        self.blobs = blobs
    }

    public func read(_ reference: String) async throws(FetchError) -> Data? {
        guard let id = blobs[reference] else { return nil }
        do { return try await repo.blob(id) } catch { throw FetchError("\(reference): \(error)") }
    }

    public var description: String { "the repository at \(commit.short)" }
}
